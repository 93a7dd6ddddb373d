"""Colorize photos with a trained model.

  python -m colorjax.colorize --workdir=runs/lsgan photos/ old/*.jpg scan.tif -o colorized/

Inputs are files, folders (searched recursively, see `images.list_images`) and glob patterns.
Each input becomes `<OUT>/<sub-folders>/<stem>_color.png` (PNG whatever the input's format;
.jpg with --format=jpeg), the sub-folders mirroring those under an input folder. Any image
`images.read_image` decodes works (EXIF orientation applied; 8/16-bit, grayscale, RGB, palette,
CMYK); RGBA keeps its alpha in PNG output (JPEG has none: such images are flattened on white).
Unreadable or corrupt files are reported and skipped; the rest are still written. The summary at
the end lists every skipped file with its reason.

Outputs that already exist are kept, with a notice, so that a rerun (after an interruption, or
on a folder that gained photos) only does what is missing; --overwrite redoes them. Inputs are
never overwritten: an output path that is also an input is refused.

Exit codes (EXIT_CODES): 0 every input has its output (written now, or kept from an earlier
run); 1 some inputs failed (unreadable, unwritable), the others were done; 2 nothing could be
done (every input failed, or none matched) or a usage error (a bad flag, a workdir without a
checkpoint).

A model trained with hints (configs/hints.py) also takes colours the user chooses, per photo,
from a JSON file (Zhang et al. 2017's local hints; `colorjax.inference`):

  python -m colorjax.colorize --workdir=runs/hints photo.jpg -o colorized/ --hints=hints.json

  {"photo.jpg": [[120, 45, [200, 30, 40]], [300, 210, "#2060c0"]]}

Each key names an input (as given on the command line, or its file name); each hint is
[x, y, colour] with x, y in the photo's full-resolution pixels (x to the right, y down) and the
colour as [r, g, b] (0-255) or "#rrggbb". Photos without an entry are colorized automatically.
A file that cannot be read or parsed, a malformed hint, or a key that names no input is one
error line (exit 2) before anything is colorized; a hint outside its photo skips that photo.

Videos (.mp4, .m4v, .mov, .avi, .mkv, .webm, named as files or globs) become
`<OUT>/<stem>_color<the input's extension>`, with stable colours over time, audio copied and
the input's size, frame rate and frame count (see `colorjax.video`):

  python -m colorjax.colorize --workdir=runs/lsgan film.mp4 -o colorized/
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
import sys
from typing import Iterable, Sequence

from absl import flags
from tqdm import tqdm

from colorjax.core import cli
from colorjax.core import console
from colorjax.core import errors
from colorjax.data import images

FORMATS = {"png": ".png", "jpeg": ".jpg"}
EXIT_CODES = """exit codes:
  0  every input has its output (written now, or kept from an earlier run)
  1  some inputs failed (listed in the summary); the others were done
  2  nothing was done (every input failed or none matched), or a usage error
     (a bad flag, a workdir without a checkpoint)"""


COMMAND = cli.Command("python -m colorjax.colorize", __doc__, required=("workdir", "out"),
                      positional="inputs", epilog=EXIT_CODES)
_FLAGS = COMMAND.flags
flags.DEFINE_string("out", None, "output folder; each input becomes <stem>_color.png in it",
                    short_name="o", flag_values=_FLAGS)
flags.DEFINE_string("workdir", None, "training workdir (config.json + checkpoints/)",
                    flag_values=_FLAGS)
flags.DEFINE_integer("step", None, "checkpoint step (None: the latest that loads)",
                     flag_values=_FLAGS)
flags.DEFINE_enum("format", "png", sorted(FORMATS),
                  "image output format, whatever the input's (videos keep theirs)",
                  flag_values=_FLAGS)
flags.DEFINE_integer("quality", 95, "JPEG quality", lower_bound=1, upper_bound=100,
                     flag_values=_FLAGS)
flags.DEFINE_integer("render_size", None,
                     "side of the square the model sees (None: its training size); colours come "
                     "from this rendering, detail from the full-size L. Larger: finer colour "
                     "regions, slower, and beyond the training size the model sees objects at "
                     "unfamiliar scales (DeOldify's render_factor)", flag_values=_FLAGS)
flags.DEFINE_integer("batch_size", 8, "images per model call (memory vs speed)", lower_bound=1,
                     flag_values=_FLAGS)
flags.DEFINE_enum("backend", "auto", ["auto", "jax", "onnxruntime"],  # inference.BACKENDS
                  "what runs the model: onnxruntime (ONNX Runtime, CPU; the onnx extra), jax, "
                  "or auto: onnxruntime on a CPU where it is installed, jax otherwise",
                  flag_values=_FLAGS)
flags.DEFINE_string("hints", None,
                    "JSON file of colour hints per photo, {\"photo.jpg\": [[x, y, [r, g, b]], "
                    "...]} (a model trained with hints; see above)", flag_values=_FLAGS)
flags.DEFINE_bool("overwrite", False,
                  "redo outputs that already exist; without it they are kept, with a notice",
                  flag_values=_FLAGS)
flags.DEFINE_bool("no_progress", False, "hide the progress bar", flag_values=_FLAGS)
flags.DEFINE_float("temporal_smoothing", 0.8,
                   "videos: strength 0..1 of the motion-compensated smoothing of the colours over "
                   "time (colorjax/video/smoothing.py); 0 colorizes frames alone", lower_bound=0.0,
                   upper_bound=1.0, flag_values=_FLAGS)
flags.DEFINE_bool("no_temporal", False,
                  "videos: colorize every frame on its own (--temporal_smoothing=0)",
                  flag_values=_FLAGS)


@dataclasses.dataclass(frozen=True)
class Job:
  """One input file and where its result goes."""
  source: str
  output: str


def _resolved(path: str) -> str:
  return os.path.normcase(os.path.realpath(path))


def expand_inputs(inputs: Sequence[str], out_dir: str,
                  extension: str) -> tuple[list[Job], list[tuple[str, str]]]:
  """(jobs, [(input, reason)] for inputs that match nothing or cannot be written)."""
  out_real = _resolved(out_dir)
  found: list[tuple[str, str]] = []  # (path, relative output stem)
  problems: list[tuple[str, str]] = []
  for arg in inputs:
    if os.path.isdir(arg):
      for path in images.list_images(arg):
        # Results written into an input folder must not be picked up as inputs next time.
        if os.path.commonpath([_resolved(path), out_real]) == out_real:
          continue
        found.append((path, os.path.splitext(images.relative_key(path, arg))[0]))
    elif os.path.isfile(arg):
      found.append((arg, os.path.splitext(os.path.basename(arg))[0]))
    else:
      matches = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
      if not matches:
        problems.append((arg, "no such file, folder or matching glob"))
      found.extend((p, os.path.splitext(os.path.basename(p))[0]) for p in matches)

  input_paths = {_resolved(path) for path, _ in found}
  jobs, claimed, seen = [], {}, set()
  for path, stem in found:
    if _resolved(path) in seen:
      continue  # The same file named twice (e.g. by a folder and a glob).
    seen.add(_resolved(path))
    output = os.path.join(out_dir, stem + "_color" + extension)
    key = _resolved(output)
    if key in input_paths:
      problems.append((path, f"output {output} is an input; refusing to overwrite it"))
    elif key in claimed:
      problems.append((path, f"output {output} already written for {claimed[key]}"))
    else:
      claimed[key] = path
      jobs.append(Job(path, output))
  return jobs, problems


# ------------------------------------------------------------------------------------------
# Hints file.
# ------------------------------------------------------------------------------------------
def _colour(value: object, where: str) -> tuple[int, int, int]:
  """[r, g, b] (0-255) or "#rrggbb" -> (r, g, b)."""
  if isinstance(value, str) and len(value) == 7 and value[0] == "#":
    try:
      return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))
    except ValueError:
      pass
  elif (isinstance(value, list) and len(value) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                for c in value)):
    return tuple(value)
  raise errors.UserError(f"{where}: colour {value!r} is neither [r, g, b] (integers 0-255) "
                         "nor \"#rrggbb\"")


def _hint(value: object, where: str) -> tuple[float, float, tuple[int, int, int]]:
  number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
  if not (isinstance(value, list) and len(value) == 3 and number(value[0])
          and number(value[1])):
    raise errors.UserError(f"{where}: {json.dumps(value)} is not [x, y, colour]")
  return float(value[0]), float(value[1]), _colour(value[2], where)


def read_hints(path: str) -> dict[str, list[tuple[float, float, tuple[int, int, int]]]]:
  """{input name: [(x, y, (r, g, b)), ...]} from a --hints JSON file; raises UserError."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except OSError as e:
    raise errors.UserError(f"--hints={path}: cannot read it: {e.strerror or e}") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.UserError(f"--hints={path}: not JSON: {e}") from None
  if not isinstance(data, dict):
    raise errors.UserError(f"--hints={path}: must be an object {{\"photo.jpg\": "
                           "[[x, y, [r, g, b]], ...]}}")
  table = {}
  for name, hints in data.items():
    if not isinstance(hints, list):
      raise errors.UserError(f"--hints={path}: {name!r} must map to a list of [x, y, colour]")
    table[name] = [_hint(h, f"--hints={path}: {name!r} hint {i}") for i, h in enumerate(hints)]
  return table


def hints_for_jobs(table: dict[str, list], jobs: Sequence["Job"], path: str) -> dict[str, list]:
  """{job.source: its hints}: each key of `table` names an input by the path given or found, or
  by its file name when that is unique; a key naming no input is a UserError."""
  by_path = {_resolved(job.source): job.source for job in jobs}
  by_name = collections.defaultdict(list)
  for job in jobs:
    by_name[os.path.basename(job.source)].append(job.source)
  found = {}
  for key, hints in table.items():
    if _resolved(key) in by_path:
      found[by_path[_resolved(key)]] = hints
    elif len(by_name.get(key, ())) == 1:
      found[by_name[key][0]] = hints
    else:
      what = "names several inputs" if by_name.get(key) else "names no input"
      raise errors.UserError(f"--hints={path}: {key!r} {what}; key each photo by its path or "
                             "its unique file name")
  return found


def _batches(jobs: Sequence[Job], size: int) -> Iterable[list[Job]]:
  for start in range(0, len(jobs), size):
    yield list(jobs[start:start + size])


def run(colorizer, jobs: Sequence[Job], fmt: str, quality: int, batch_size: int,
        progress: bool = True, hints: dict[str, list] | None = None
        ) -> tuple[list[str], list[tuple[str, str]]]:
  """Colorizes `jobs`; returns (written outputs, [(input, reason)] for skipped inputs).

  `hints`: {job.source: [(x, y, (r, g, b)), ...]} for the photos that have hints."""
  hints = hints or {}
  written, skipped = [], []
  with tqdm(total=len(jobs), unit="img", disable=not progress, file=sys.stderr) as bar:
    for batch in _batches(jobs, batch_size):
      ready = []
      for job in batch:
        try:
          # Colorizing needs no minimum size: a 1x1 image is upsampled like any other.
          array = images.to_model_input(images.read_image(job.source, min_side=1))
          if job.source in hints:  # Checked here, where the photo's size is known.
            colorizer.hint_maps(array.shape[:2], hints[job.source])
          ready.append((job, array))
        except images.ImageError as e:
          skipped.append((job.source, e.detail))
        except ValueError as e:
          skipped.append((job.source, f"bad hint: {e}"))
      results = colorizer.colorize_batch(
          [array for _, array in ready],
          [hints.get(job.source) for job, _ in ready]) if ready else []
      for (job, _), result in zip(ready, results):
        try:
          images.save_image(result, job.output, fmt, quality)
          written.append(job.output)
        except OSError as e:
          skipped.append((job.source, f"cannot write {job.output}: {e.strerror or e}"))
      bar.update(len(batch))
  return written, skipped


def final_output(job: Job) -> str:
  """Where `job`'s result lands: a video keeps its container (<stem>_color<its extension>)."""
  # (a) colorjax.video brings JAX, PyAV and OpenCV (~890 ms): --help and the usage errors found
  # before the inputs are listed answer without them.
  from colorjax import video  # pylint: disable=g-import-not-at-top
  if video.is_video(job.source):
    return os.path.splitext(job.output)[0] + os.path.splitext(job.source)[1].lower()
  return job.output


def split_existing(jobs: Sequence[Job], overwrite: bool) -> tuple[list[Job], list[Job]]:
  """(jobs to run, jobs whose output already exists and is kept)."""
  if overwrite:
    return list(jobs), []
  kept = [job for job in jobs if os.path.exists(final_output(job))]
  return [job for job in jobs if job not in kept], kept


def exit_code(written: Sequence[str], kept: Sequence[Job],
              skipped: Sequence[tuple[str, str]]) -> int:
  """0 all done, 1 some failed, 2 none done (see EXIT_CODES)."""
  if not skipped:
    return 0 if written or kept else 2
  return 1 if written or kept else 2


def summary(written: Sequence[str], skipped: Sequence[tuple[str, str]],
            kept: Sequence[Job] = ()) -> str:
  lines = [f"written: {len(written)}, skipped: {len(skipped)}"]
  if kept:
    lines[0] += (f", kept: {len(kept)} (their outputs exist, e.g. {final_output(kept[0])}; "
                 "--overwrite redoes them)")
  reasons = collections.Counter(reason.split(":")[0] for _, reason in skipped)
  lines += [f"  {count} x {reason}" for reason, count in reasons.most_common()]
  lines += [f"skipped {path}: {reason}" for path, reason in skipped]
  return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> cli.Args:
  """The flags of `argv` (`args.inputs`: the positional INPUTs); raises UserError on a mistake."""
  args = COMMAND.parse(argv)
  if not args.inputs:
    raise errors.UserError("no INPUT: name image or video files, folders or glob patterns")
  if args.no_temporal:
    args.temporal_smoothing = 0.0
  return args


def _colorize(args: cli.Args) -> int:
  if os.path.isfile(args.out):
    raise errors.UserError(f"-o {args.out} is a file (an input?); give an output folder")
  console.quiet_libraries()  # Before TensorFlow or Orbax load.
  jobs, skipped = expand_inputs(args.inputs, args.out, FORMATS[args.format])
  table = read_hints(args.hints) if args.hints else {}
  job_hints = hints_for_jobs(table, jobs, args.hints)
  jobs, kept = split_existing(jobs, args.overwrite)
  written = []
  if jobs:
    # (a) JAX, Orbax and the model load only when there is work: --help, usage errors and a
    # rerun whose outputs all exist answer without them (~470 ms for inference, ~360 ms more
    # for checkpointing); and after quiet_libraries above.
    # pylint: disable=g-import-not-at-top
    from colorjax import inference
    from colorjax.core import checkpointing
    # pylint: enable=g-import-not-at-top
    try:
      colorizer = inference.Colorizer.from_workdir(args.workdir, args.step, args.render_size,
                                                   args.batch_size, backend=args.backend)
    except (FileNotFoundError, checkpointing.CheckpointError) as e:
      return errors.report(e)  # No usable or no fitting checkpoint: one line.
    if job_hints and not colorizer.takes_hints:
      raise errors.UserError(f"--hints: the model in {args.workdir} was trained without hints "
                             "(config.model.hints=False); train one with configs/hints.py")
    from colorjax import video  # pylint: disable=g-import-not-at-top  (a): as in final_output.
    videos = [job for job in jobs if video.is_video(job.source)]
    photos = [job for job in jobs if job not in videos]
    if any(job.source in job_hints for job in videos):
      raise errors.UserError("--hints: hints apply to photos, not videos")
    written, failed = (run(colorizer, photos, args.format, args.quality, args.batch_size,
                           progress=not args.no_progress, hints=job_hints)
                       if photos else ([], []))
    # A video keeps its container: <stem>_color<the input's extension>.
    video_written, video_failed = video.run_jobs(
        colorizer, [(job.source, final_output(job)) for job in videos],
        args.temporal_smoothing, progress=not args.no_progress)
    written, skipped = written + video_written, skipped + failed + video_failed
  print(summary(written, skipped, kept))
  return exit_code(written, kept, skipped)


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m colorjax.colorize` with `argv` (default: sys.argv[1:]); returns the exit code."""
  return COMMAND.run(_colorize, argv, parse=parse_args)


if __name__ == "__main__":
  sys.exit(main())
