"""Before/after pictures for README: gray input | colorized | original, with scores.

Colorizes photos through the public `colorjax.Colorizer` (what colorize, serve and export run)
and writes one labelled PNG strip, printing a markdown table of PSNR, colourfulness and
checkerboard energy (colorjax/evals/quality.py) for the averaged weights every command uses, the raw
generator, and the gray baseline.

  # The README's main job, on the six scikit-image photos it trained on:
  python docs/make_pictures.py --workdir=runs/lsgan --out=docs/pictures/main_job.png

  # A CIFAR-10 recipe model on test images it never saw (evenly spaced over the classes):
  python docs/make_pictures.py --workdir=runs/cifar_lsgan \
    --photos=../shared/data/cifar10/test --num=8 --out=docs/pictures/cifar_lsgan.png
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from colorjax import inference
from colorjax.data import images as images_lib
from colorjax.evals import quality
from colorjax.evals import visualize


def load_photos(source: str, num: int) -> tuple[list[str], list[np.ndarray]]:
  """("skimage": the embedded training photos) or `num` files evenly spaced over a folder."""
  if source == "skimage":
    import skimage.data  # pylint: disable=g-import-not-at-top
    names = ["astronaut", "chelsea", "coffee", "rocket"]
    return names, [getattr(skimage.data, n)()[..., :3] for n in names]
  paths = images_lib.list_images(os.path.expanduser(source))
  if not paths:
    raise SystemExit(f"error: no images under {source}")
  picks = np.unique(np.linspace(0, len(paths) - 1, min(num, len(paths))).round().astype(int))
  chosen = [paths[i] for i in picks]
  return ([os.path.relpath(p, source) for p in chosen],
          [images_lib.read_image(p).rgb for p in chosen])


def _fit(image: np.ndarray, height: int) -> np.ndarray:
  """Resizes to `height` rows (nearest for small images so pixels stay visible)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pil = Image.fromarray(image)
  width = max(1, round(image.shape[1] * height / image.shape[0]))
  resample = Image.NEAREST if image.shape[0] < height else Image.LANCZOS
  return np.asarray(pil.resize((width, height), resample))


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--workdir", required=True, help="a training workdir")
  parser.add_argument("--photos", default="skimage",
                      help="'skimage' (the main job's training photos) or a folder of images")
  parser.add_argument("--num", type=int, default=8, help="photos taken from a folder")
  parser.add_argument("--height", type=int, default=128, help="row height in the PNG")
  parser.add_argument("--out", required=True, help="PNG to write")
  args = parser.parse_args(argv)

  names, photos = load_photos(args.photos, args.num)
  averaged = inference.Colorizer.from_workdir(args.workdir)
  raw = inference.Colorizer.from_workdir(args.workdir, weights="raw")
  print(f"{args.workdir} at step {averaged.step}; {len(photos)} photos from {args.photos}\n")
  print("| photo | PSNR averaged / raw / gray (dB) | colourfulness averaged / raw / true "
        "| checkerboard averaged / raw / true |")
  print("|---|---|---|---|")
  rows, totals = [], []
  for name, photo in zip(names, photos):
    out = averaged(photo)
    a, r = quality.score_photo(averaged, photo, out), quality.score_photo(raw, photo)
    totals.append((a.psnr, r.psnr, a.gray_psnr, a.colorfulness, r.colorfulness,
                   a.true_colorfulness, a.checkerboard, r.checkerboard, a.true_checkerboard))
    print(f"| {name} | {a.psnr:.1f} / {r.psnr:.1f} / {a.gray_psnr:.1f} | {a.colorfulness:.1f} / "
          f"{r.colorfulness:.1f} / {a.true_colorfulness:.1f} | {a.checkerboard:.2f} / "
          f"{r.checkerboard:.2f} / {a.true_checkerboard:.2f} |")
    gray = np.repeat(np.asarray(inference.lightness(photo / 255.0)) / 100.0, 3, axis=-1)
    rows.append([_fit(x, args.height) for x in
                 ((np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8), out, photo)])
  m = np.mean(totals, axis=0)
  print(f"| mean | {m[0]:.1f} / {m[1]:.1f} / {m[2]:.1f} | {m[3]:.1f} / {m[4]:.1f} / {m[5]:.1f} "
        f"| {m[6]:.2f} / {m[7]:.2f} / {m[8]:.2f} |")
  width = max(row[0].shape[1] for row in rows)
  columns = [np.stack([np.pad(row[c], ((0, 0), (0, width - row[c].shape[1]), (0, 0)),
                              constant_values=255) for row in rows]).astype(np.float32) / 255.0
             for c in range(3)]
  grid = visualize.sample_grid(*columns, labels=("gray input", "colorized", "original"))
  visualize.save_png(args.out, grid)
  print(f"\nwrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
