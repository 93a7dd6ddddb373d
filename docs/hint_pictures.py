"""Pictures and numbers of a hint model (configs/hints.py; Zhang et al. 2017's local hints).

Through the public `colorjax.Colorizer` with `hints=[(x, y, (r, g, b))]`, the path a user takes:
hints are revealed from each photo's own truth at random points (drawn as Zhang et al. 2017's
`add_color_patches_rand_gt` draws them: normal around the centre, a quarter of the side as the
standard deviation), each the original's mean colour over the full-resolution area of one hint
patch. Writes

* `--picture`: rows of automatic result | gray input with the hints marked | result with the
  hints | original, for `--picture_hints` hints per photo;
* `--curve`: PSNR against the number of hints (0-100) on the full-size photos and, given
  `--eval_json` (a run's eval/latest.json), on its eval split, as a PNG line chart;

and prints the markdown table of PSNR and colourfulness by hint count.

  python docs/hint_pictures.py --workdir=runs/hints_cifar \
    --eval_json=runs/hints_cifar/eval/latest.json --baseline_workdir=runs/lsgan_cifar \
    --picture=docs/pictures/hints.png --curve=docs/pictures/hints_curve.png
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from PIL import Image, ImageDraw

from colorjax import inference
from colorjax.evals import quality
from colorjax.evals import visualize

COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def load_photos(names) -> list[np.ndarray]:
  import skimage.data  # pylint: disable=g-import-not-at-top
  return [getattr(skimage.data, n)()[..., :3] for n in names]


def truth_hints(photo: np.ndarray, count: int, render_size: int, patch_size: int,
                rng: np.random.Generator) -> list[tuple[int, int, tuple[int, int, int]]]:
  """`count` hints from the photo's truth: positions normal around the centre (std a quarter
  of the side), each the mean colour of the full-resolution area of a hint patch there."""
  height, width = photo.shape[:2]
  half_h = max(1, round(patch_size * height / render_size / 2))
  half_w = max(1, round(patch_size * width / render_size / 2))
  hints = []
  for _ in range(count):
    y = int(np.clip(rng.normal(height / 2, height / 4), 0, height - 1))
    x = int(np.clip(rng.normal(width / 2, width / 4), 0, width - 1))
    area = photo[max(0, y - half_h):y + half_h, max(0, x - half_w):x + half_w]
    colour = tuple(int(c) for c in np.round(area.reshape(-1, 3).mean(axis=0)))
    hints.append((x, y, colour))
  return hints


def marked(photo: np.ndarray, hints, size: int) -> np.ndarray:
  """The gray input with each hint drawn as a square of its colour, outlined in black and
  white so that it shows on any background."""
  gray = np.asarray(inference.lightness(photo / 255.0))[..., 0] / 100.0
  image = Image.fromarray((np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8)).convert("RGB")
  draw = ImageDraw.Draw(image)
  for x, y, colour in hints:
    box = (x - size, y - size, x + size, y + size)
    draw.rectangle(box, fill=colour, outline=(0, 0, 0), width=max(1, size // 4))
    draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), outline=(255, 255, 255))
  return np.asarray(image)


def _fit(image: np.ndarray, height: int) -> np.ndarray:
  pil = Image.fromarray(image)
  width = max(1, round(image.shape[1] * height / image.shape[0]))
  return np.asarray(pil.resize((width, height), Image.LANCZOS))


def line_chart(series: dict[str, list[tuple[int, float]]], path: str, width: int = 640,
               height: int = 400) -> None:
  """PSNR (dB) against hints, x on a log scale with 0 hints at the left ("auto")."""
  left, right, top, bottom = 60, 20, 20, 50
  image = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(image)
  values = [v for points in series.values() for _, v in points]
  low, high = np.floor(min(values)) - 1, np.ceil(max(values)) + 1
  xpos = lambda n: left + (np.log10(max(n, 0.4)) - np.log10(0.4)) / (
      np.log10(100) - np.log10(0.4)) * (width - left - right)
  ypos = lambda v: top + (high - v) / (high - low) * (height - top - bottom)
  draw.rectangle((left, top, width - right, height - bottom), outline="black")
  for n in COUNTS:
    draw.text((xpos(n) - 8, height - bottom + 6), "auto" if n == 0 else str(n), fill="black")
  for v in np.arange(low, high + 0.1, max(1, round((high - low) / 8))):
    draw.line((left - 4, ypos(v), left, ypos(v)), fill="black")
    draw.text((8, ypos(v) - 6), f"{v:.0f} dB", fill="black")
  draw.text((width / 2 - 60, height - 22), "hints revealed from the truth", fill="black")
  colours = ((200, 40, 40), (40, 90, 200), (40, 150, 60), (120, 120, 120))
  for i, (name, points) in enumerate(series.items()):
    xy = [(xpos(n), ypos(v)) for n, v in points]
    draw.line(xy, fill=colours[i % 4], width=2)
    for x, y in xy:
      draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colours[i % 4])
    draw.text((left + 10, top + 8 + 14 * i), name, fill=colours[i % 4])
  image.save(path)


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="a workdir trained with hints")
  parser.add_argument("--eval_json", default="", help="eval/latest.json with by_hint_count")
  parser.add_argument("--baseline_workdir", default="",
                      help="the same config trained without hints: its PSNR on the photos")
  parser.add_argument("--picture", default="", help="before/after PNG to write")
  parser.add_argument("--picture_hints", type=int, default=10, help="hints per photo in it")
  parser.add_argument("--curve", default="", help="PSNR-vs-hints PNG to write")
  parser.add_argument("--render_size", type=int, default=None, help="None: the training size")
  parser.add_argument("--height", type=int, default=160, help="row height in the picture")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  colorizer = inference.Colorizer.from_workdir(args.workdir, render_size=args.render_size)
  if not colorizer.takes_hints:
    print(f"error: {args.workdir} was trained without hints", file=sys.stderr)
    return 2
  photos = load_photos(PHOTOS)
  patch = colorizer.hint_patch_size
  print(f"{args.workdir} at step {colorizer.step}, render size {colorizer.render_size}, "
        f"{len(photos)} full-size photos ({', '.join(PHOTOS)})\n")
  print("| hints | PSNR (dB) | colourfulness (true) |\n|---|---|---|")
  curve = []
  for count in COUNTS:
    scores = []
    for i, photo in enumerate(photos):
      hints = truth_hints(photo, count, colorizer.render_size, patch,
                          np.random.default_rng([args.seed, i, count]))
      scores.append(quality.score_photo(colorizer, photo, colorizer(photo, hints=hints)))
    psnr = float(np.mean([s.psnr for s in scores]))
    print(f"| {count} | {psnr:.2f} | {np.mean([s.colorfulness for s in scores]):.1f} "
          f"({np.mean([s.true_colorfulness for s in scores]):.1f}) |")
    curve.append((count, psnr))
  print(f"| gray | {np.mean([s.gray_psnr for s in scores]):.2f} | 0 |")
  if args.baseline_workdir:
    baseline = inference.Colorizer.from_workdir(args.baseline_workdir,
                                                render_size=args.render_size)
    scores = [quality.score_photo(baseline, photo) for photo in photos]
    print(f"| without hints ({args.baseline_workdir}, step {baseline.step}) | "
          f"{np.mean([s.psnr for s in scores]):.2f} | "
          f"{np.mean([s.colorfulness for s in scores]):.1f} |")

  if args.curve:
    series = {"full-size photos (skimage)": curve}
    if args.eval_json:
      record = json.load(open(args.eval_json))
      series[f"{record['dataset'].rstrip('/').split('/')[-1]} eval split"] = [
          (int(n), m["psnr"]) for n, m in sorted(record["by_hint_count"].items(),
                                                  key=lambda kv: int(kv[0]))]
    line_chart(series, args.curve)
    print(f"wrote {args.curve}")
  if args.picture:
    rows = []
    for i, photo in enumerate(photos[:4]):
      hints = truth_hints(photo, args.picture_hints, colorizer.render_size, patch,
                          np.random.default_rng([args.seed, i, 1000]))
      size = max(3, photo.shape[0] // 60)
      rows.append([_fit(x, args.height) for x in (
          colorizer(photo), marked(photo, hints, size), colorizer(photo, hints=hints), photo)])
    width = max(row[0].shape[1] for row in rows)
    columns = [np.stack([np.pad(row[c], ((0, 0), (0, width - row[c].shape[1]), (0, 0)),
                                constant_values=255) for row in rows]).astype(np.float32) / 255
               for c in range(4)]
    grid = visualize.sample_grid(*columns, labels=(
        "automatic", f"{args.picture_hints} hints (marked)", "with hints", "original"))
    visualize.save_png(args.picture, grid)
    print(f"wrote {args.picture}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
