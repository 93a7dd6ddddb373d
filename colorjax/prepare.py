r"""Prepares what training reads: a folder of photos as a TFDS dataset, or the FID weights.

  python -m colorjax.prepare --src=~/Pictures --name=my_photos --data_dir=~/tfds

reads every image under --src (nested folders, jpg/png/webp/bmp/tiff/gif), drops what cannot
teach colour (unreadable files, grayscale photos, tiny images), shrinks the rest so the longer
side is at most --max_side (and the shorter at most --short_side: 288 suits training at 256 px,
fewer pixels to decode per step), stores them as JPEG (quality --jpeg_quality, 4:4:4 chroma; the
fastest to read) or, with --image_format=png, losslessly, and writes `train` and `validation`
splits (by a stable hash of each path, as the folder data source splits) as an ArrayRecord TFDS
dataset, read with
--config.data.name=my_photos --config.data.data_dir=~/tfds. Photos in one first-level subfolder
per class also get a "label". Work is resumable: decoding runs in chunks (a pool of --workers
processes) kept under <data_dir>/.colorjax_prepare/<name>/ until the dataset is written, so a
restarted run skips finished chunks. See `colorjax.data.prepare`.

  python -m colorjax.prepare --src=pt_inception-2015-12-05-6726825d.pth \
    --fid_weights=fid_inception.npz

converts pytorch-fid's Inception weights to the .npz that the config's FID weights name
(docs/evaluation.md, FID; the format is `colorjax.evals.inception`'s); it needs `torch`
importable, only to unpickle the .pth.

Exit codes: 0 done, 2 a mistake in the command or the input (one line saying what to change).
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Sequence

from absl import flags

from colorjax.core import cli
from colorjax.core import diskspace
from colorjax.core import errors
from colorjax.core import tf_utils
from colorjax.data import images
from colorjax.data import prepare

COMMAND = cli.Command("python -m colorjax.prepare", __doc__, required=("src",))
_FLAGS = COMMAND.flags
flags.DEFINE_string("src", None, "folder of photos (searched recursively); with --fid_weights, "
                    "pytorch-fid's .pth file", flag_values=_FLAGS)
flags.DEFINE_string("name", None, "dataset name, snake_case (needed for a dataset)",
                    flag_values=_FLAGS)
flags.DEFINE_string("data_dir", None, "TFDS data dir to write into (needed for a dataset)",
                    flag_values=_FLAGS)
flags.DEFINE_integer("max_side", 512, "longer side of stored images", flag_values=_FLAGS)
flags.DEFINE_integer("short_side", 0,
                     "shorter side of stored images, 0 = no limit; for training at N px, "
                     "ceil(1.125 * N) (e.g. 288 for 256) stores what the crops read and no more",
                     flag_values=_FLAGS)
flags.DEFINE_enum("image_format", "jpeg", ["jpeg", "png"],
                  "how images are stored: jpeg (4:4:4 chroma, --jpeg_quality; ~43 dB PSNR "
                  "from the resized photo at quality 95, the fastest to read) or png (lossless, "
                  "~3x larger, slower to read)", flag_values=_FLAGS)
flags.DEFINE_integer("jpeg_quality", 95, "quality of stored JPEGs (1-100)", flag_values=_FLAGS)
flags.DEFINE_enum("jpeg_chroma", "444", ["444", "420"],
                  "chroma of stored JPEGs: 444 keeps the colour the model learns at full "
                  "resolution; 420 halves it, as cameras do: decodes ~25% cheaper",
                  flag_values=_FLAGS)
flags.DEFINE_float("validation_percent", 5.0,
                   "share of photos held out for eval, by a hash of each path (subfolders "
                   "become class labels; to keep a folder's own train/ and test/ split, train "
                   "on the folder directly with --config.data.name=DIR)", flag_values=_FLAGS)
flags.DEFINE_integer("min_side", images.DEFAULT_MIN_SIDE,
                     "skip images whose shorter side is below this", flag_values=_FLAGS)
flags.DEFINE_integer("workers", 2, "decoding processes", flag_values=_FLAGS)
flags.DEFINE_integer("chunk_size", 128, "files per resumable chunk", flag_values=_FLAGS)
flags.DEFINE_bool("keep_work", False, "keep decoded chunks after the dataset is written",
                  flag_values=_FLAGS)
flags.DEFINE_bool("no_progress", False, "no progress bars/summary", flag_values=_FLAGS)
flags.DEFINE_string("fid_weights", None,
                    "instead of a dataset: write the FID Inception weights converted from the "
                    "--src .pth to this .npz (the file the config's FID weights name)",
                    flag_values=_FLAGS)


def _convert_fid_weights(src: str, dst: str) -> int:
  """pytorch-fid's .pth at `src` -> the .npz `colorjax.evals.inception` loads, at `dst`."""
  if not os.path.isfile(src):
    raise errors.UserError(f"--src={src} is not a file: with --fid_weights, --src is pytorch-fid's "
                           "pt_inception-2015-12-05-6726825d.pth")
  # (a) Flax and JAX (~580 ms), which preparing a dataset never needs.
  from colorjax.evals import inception  # pylint: disable=g-import-not-at-top
  try:
    inception.convert_pytorch_fid(src, dst)
  except ImportError as e:  # No torch: the message says what to install.
    raise errors.UserError(str(e)) from e
  except (ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
    # Not a .pth (torch.load's errors), or not pytorch-fid's Inception (a missing or odd array).
    raise errors.UserError(f"--src={src} is not pytorch-fid's Inception: {e}") from e
  print(f"wrote {dst}: name it as the config's FID weights (docs/evaluation.md, FID)",
        file=sys.stderr)
  return 0


def _prepare(args: cli.Args) -> int:
  if args.fid_weights:
    extra = [f"--{name}" for name in ("name", "data_dir") if getattr(args, name)]
    if extra:
      raise errors.UserError(f"--fid_weights converts Inception weights; {' and '.join(extra)} "
                             f"{'names' if len(extra) == 1 else 'name'} a dataset: prepare each "
                             "in its own command")
    return _convert_fid_weights(args.src, args.fid_weights)
  missing = [f"--{name}" for name in ("name", "data_dir") if not getattr(args, name)]
  if missing:
    raise errors.UserError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                           "required for a dataset (or --fid_weights=OUT.npz to convert FID "
                           "weights from --src)  (--help lists the flags)")
  if not tf_utils.tensorflow_available():  # Say so now, not after decoding every photo.
    raise errors.UserError(f"colorjax.prepare needs TensorFlow and TFDS, which the core install "
                           f"leaves out: {tf_utils.INSTALL_HINT}")
  try:
    prepare.prepare(args.src, args.name, args.data_dir, max_side=args.max_side,
                    short_side=args.short_side, image_format=args.image_format,
                    jpeg_quality=args.jpeg_quality, jpeg_chroma=args.jpeg_chroma,
                    validation_percent=args.validation_percent, min_side=args.min_side,
                    workers=args.workers, chunk_size=args.chunk_size, keep_work=args.keep_work,
                    progress=not args.no_progress)
  except (ValueError, FileExistsError, NotADirectoryError, diskspace.DiskFullError) as e:
    raise errors.UserError(str(e)) from e
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m colorjax.prepare` with `argv` (default: sys.argv[1:]); returns the exit code."""
  return COMMAND.run(_prepare, argv)


if __name__ == "__main__":
  sys.exit(main())
