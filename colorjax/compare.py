"""Trains several configs with one budget and seed, scores them on one split, writes a report.

  # The CIFAR-10 recipe (docs/quality.md): each config's `:cifar` variant defines the budget.
  python -m colorjax.compare --configs=regression_l1:cifar,colorful:cifar,lsgan:cifar \
    --data=../shared/data/cifar10 --workdir=runs/cifar --out=docs

  # Or one budget imposed on default configs:
  python -m colorjax.compare --configs=lsgan,pix2pix,regression_l1,colorful \
    --data=../shared/data/cifar10/train --eval_data=../shared/data/cifar10/test \
    --steps=300 --image_size=32 --batch_size=32 --workdir=runs/compare --out=docs

Each config trains with the real trainer (`train.train_and_evaluate`) into <workdir>/<config>;
a finished config is not retrained (rerunning resumes or reuses it). Each is then evaluated with
`train.evaluate_checkpoint` (EMA weights, the full metric suite and the gray baseline) on the
same images, and the report is <out>/comparison.md (one row per config + the gray baseline)
and <out>/comparison.png (rows: eval images; columns: gray input, each model, ground truth).

Which images are evaluated: with `--eval_data=FOLDER` (e.g. CIFAR-10's test folder) a stable
hash of each path picks about `--eval_images` of the folder's files, spread over the whole folder
(folders list files sorted by path, so "the first N" of a class-per-subfolder layout would be
one class). Without it, `--eval_images` evenly spaced images of the training source's own eval
split (a folder with train/ and test/ subfolders evaluates on test/).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from typing import Callable, Sequence

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from colorjax import inference
from colorjax import train
from colorjax.color import hints
from colorjax.color import lab
from colorjax.core import checkpointing
from colorjax.core import cli
from colorjax.core import config_files
from colorjax.core import files
from colorjax.core import summaries
from colorjax.core import tf_utils
from colorjax.data import images
from colorjax.data import pipeline
from colorjax.evals import visualize
from colorjax.models import unet
from colorjax.training import builders

_TRAIN_RECORD = "compare_train.json"

# The table's metric columns: (eval JSON key, header, format).
METRIC_COLUMNS = (("psnr", "PSNR (dB) ↑", "{:.2f}"), ("ssim", "SSIM ↑", "{:.4f}"),
                  ("colorfulness", "colourfulness", "{:.1f}"),
                  ("delta_colorfulness", "abs ΔCF ↓", "{:.1f}"), ("auc", "AuC ↑", "{:.4f}"),
                  ("ab_error", "ab error ↓", "{:.2f}"))


# ------------------------------------------------------------------------------------------
# Configs.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Budget:
  """What every config shares: the training budget, the data and the evaluated images.

  A zero keeps each config's own value (a variant such as `lsgan:cifar` defines a budget, its
  eval cadence included, so TensorBoard shows learning curves).
  """
  steps: int = 0
  image_size: int = 0
  batch_size: int = 0
  eval_images: int = 0
  seed: int = 0
  data: str = ""  # "" keeps each config's own data.name.
  eval_data: str = ""  # A folder to evaluate on instead of the training source's eval split.


def budget_config(config: ml_collections.ConfigDict, budget: Budget) -> ml_collections.ConfigDict:
  """The training config: the shared budget, the U-Net depth for the size, and no in-loop
  eval when the budget sets the steps (the config's own cadence otherwise)."""
  config = ml_collections.ConfigDict(config.to_dict())  # A copy, unlocked.
  config.seed = budget.seed
  if budget.steps:
    config.num_train_steps = budget.steps
    config.log_every_steps = min(config.log_every_steps, max(1, budget.steps // 5))
    config.checkpoint_every_steps = budget.steps
    # Evaluation happens after training, on the comparison's split: none inside the loop.
    config.eval_every_steps = config.sample_every_steps = 10 ** 9
  if budget.batch_size:
    config.batch_size = budget.batch_size
  if budget.image_size:
    config.data.image_size = budget.image_size
    if config.model.generator == "unet":
      config.model.generator_kwargs.num_downs = unet.num_downs_for(budget.image_size)
  if budget.data:
    config.data.name = budget.data
  return config


def eval_config(config: ml_collections.ConfigDict, budget: Budget) -> ml_collections.ConfigDict:
  """The same model config, pointed at the comparison's eval images."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval.batch_size = min(64, max(config.eval.batch_size, jax.device_count()))
  config.eval.batch_size -= config.eval.batch_size % jax.device_count()
  if budget.eval_data:
    num_files = len(images.list_images(budget.eval_data))
    if not num_files:
      raise FileNotFoundError(f"no images under --eval_data={budget.eval_data!r}")
    config.data.name = budget.eval_data
    # The folder's hash split as a stable, class-balanced-in-expectation sample of ~N files.
    wanted = budget.eval_images or config.eval.num_images
    config.data.validation_percent = min(100.0, 100.0 * wanted / num_files)
    config.eval.num_images = -1
  elif budget.eval_images:
    config.eval.num_images = budget.eval_images
  return config


# ------------------------------------------------------------------------------------------
# Training and evaluation of one config.
# ------------------------------------------------------------------------------------------
def _logged_images_per_sec(workdir: str) -> float:
  """Median of the trainer's logged images/s, without the first window (it holds the compile)."""
  values = summaries.read_scalars(workdir).get("images_per_sec", {})  # Event files, no TF.
  windows = [values[s] for s in sorted(values)]
  return float(np.median(windows[1:] if len(windows) > 1 else windows)) if windows else math.nan


def _latest_step(workdir: str) -> int | None:
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return None
  manager = checkpointing.make_manager(workdir, 1, read_only=True)
  step = manager.latest_step()
  manager.close()
  return step


def train_one(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (or resumes, or reuses) one config; {wall_s, images_per_sec, resumed_from}."""
  record_path = os.path.join(workdir, _TRAIN_RECORD)
  done = _latest_step(workdir)
  if done == config.num_train_steps and os.path.exists(record_path):
    logging.info("%s is already trained to step %d: reusing it", workdir, done)
    with open(record_path) as f:
      return json.load(f)
  start = time.perf_counter()
  state = train.train_and_evaluate(config, workdir)
  if int(state.step) < config.num_train_steps:  # SIGTERM / SIGINT: checkpointed, then stopped.
    raise SystemExit(f"training of {workdir} stopped at step {int(state.step)}; rerun the same "
                     "command to resume it")
  record = {"wall_s": time.perf_counter() - start, "resumed_from": done or 0,
            "steps": config.num_train_steps, "batch_size": config.batch_size,
            "images_per_sec": _logged_images_per_sec(workdir)}
  with open(record_path, "w") as f:
    json.dump(record, f, indent=2)
  return record


def evaluate_one(config: ml_collections.ConfigDict, workdir: str) -> dict[str, object]:
  """The eval record ({model, gray_baseline, num_images, ...}) of the final checkpoint."""
  train.evaluate_checkpoint(config, workdir)
  with open(os.path.join(workdir, "eval", "latest.json")) as f:
    return json.load(f)


# ------------------------------------------------------------------------------------------
# The sample grid.
# ------------------------------------------------------------------------------------------
def eval_images(config: ml_collections.ConfigDict) -> np.ndarray:
  """All eval images of `config` (uint8, centre-cropped) in the order the eval loop reads them."""
  dataset, _ = pipeline.create_eval_dataset(config)
  return np.concatenate([batch["image"] for batch in dataset])


def pick_rows(images: np.ndarray, rows: int) -> np.ndarray:
  """`rows` images evenly spaced over the eval set (sorted folders group by class)."""
  index = np.unique(np.linspace(0, len(images) - 1, min(rows, len(images))).round().astype(int))
  return images[index]


def predict_rgb(config: ml_collections.ConfigDict, workdir: str, rgb: np.ndarray) -> np.ndarray:
  """The EMA generator's colourization of uint8 `rgb`, as float RGB in [0, 1].

  Only the generator is built and only its averaged weights are read, through the readers'
  one restore path (`inference.restore_inference_variables`: the newest step that loads).
  """
  generator, decode = builders.make_generator(config)
  variables, _ = inference.restore_inference_variables(config, generator, workdir, None)

  takes_hints = hints.enabled(config)  # A hint model is compared without hints.

  @jax.jit
  def colorize(variables, rgb):
    l, _ = lab.uint8_to_model_inputs(rgb)
    model_input = hints.automatic_input(l) if takes_hints else l
    return lab.model_outputs_to_rgb(
        l, inference.apply_generator(generator, decode, variables, model_input))
  return np.asarray(colorize(variables, jnp.asarray(rgb)))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour enlargement: small images stay sharp in a browser."""
  return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


# ------------------------------------------------------------------------------------------
# The report.
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
  name: str
  metrics: dict[str, float]
  images_per_sec: float = math.nan
  wall_s: float = math.nan


def markdown_table(rows: Sequence[Row]) -> str:
  """One Markdown row per config, the gray baseline included."""
  header = ["config", *(h for _, h, _ in METRIC_COLUMNS), "train images/s", "train wall (s)"]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] *
                                                            (len(header) - 1)) + "|"]
  for row in rows:
    cells = [row.name] + [fmt.format(row.metrics[key]) for key, _, fmt in METRIC_COLUMNS]
    cells += ["–" if math.isnan(row.images_per_sec) else f"{row.images_per_sec:.1f}",
              "–" if math.isnan(row.wall_s) else f"{row.wall_s:.0f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


_NOTES = "## Notes"


def write_report(path: str, rows: Sequence[Row], header: str) -> None:
  """`header`, then the table; a hand-written "## Notes" section already there is kept."""
  notes = ""
  if os.path.exists(path):
    with open(path) as f:
      previous = f.read()
    if _NOTES in previous:
      notes = "\n" + previous[previous.index(_NOTES):]
  files.write_text(path, header.rstrip() + "\n\n" + markdown_table(rows) + "\n" + notes)


def compare(names: Sequence[str], make_config: Callable[[str], ml_collections.ConfigDict],
            budget: Budget, workdir: str, out: str, overrides: Sequence[str] = (),
            header: str = "# Comparison", grid_rows: int = 8,
            grid_scale: int = 2) -> tuple[list[Row], dict[str, object]]:
  """Trains and evaluates every config; writes <out>/comparison.md and <out>/comparison.png.

  `make_config(name)` gives a config before the budget; `overrides` ("key=value") apply after
  it. Returns the table rows (configs, then the gray baseline) and facts about the evaluation.
  """
  rows, predictions, eval_records = [], [], []
  sample = None
  for name in names:
    config = budget_config(make_config(name), budget)
    config_files.apply_overrides(config, overrides)
    run_dir = os.path.join(workdir, name.replace(":", "_"))  # lsgan:cifar -> lsgan_cifar
    logging.info("=== %s -> %s", name, run_dir)
    timing = train_one(config, run_dir)
    ev_config = eval_config(config, budget)
    record = evaluate_one(ev_config, run_dir)
    eval_records.append(record)
    if sample is None:
      sample = pick_rows(eval_images(ev_config), grid_rows)
    predictions.append(predict_rgb(ev_config, run_dir, sample))
    rows.append(Row(name, record["model"], timing["images_per_sec"], timing["wall_s"]))
  counts = {r["num_images"] for r in eval_records}
  if len(counts) != 1:
    raise RuntimeError(f"configs were evaluated on different numbers of images: {counts}")
  rows.append(Row("gray baseline (ab = 0)", eval_records[0]["gray_baseline"]))

  gray, truth = np.asarray(lab.gray_rgb(sample)), sample.astype(np.float32) / 255.0
  grid = upscale(visualize.sample_grid(gray, *predictions, truth), grid_scale)
  os.makedirs(out, exist_ok=True)
  visualize.save_png(os.path.join(out, "comparison.png"), grid)
  facts = {"num_eval_images": counts.pop(), "grid_rows": len(sample),
           "grid_columns": ["gray input", *names, "ground truth"]}
  header += (f"\n\nEvaluated on {facts['num_eval_images']} images. `comparison.png`: "
             f"{facts['grid_rows']} eval images (rows); columns: "
             f"{', '.join(facts['grid_columns'])} (EMA weights, {grid_scale}x nearest).")
  write_report(os.path.join(out, "comparison.md"), rows, header)
  return rows, facts


# ------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------
COMMAND = cli.Command("python -m colorjax.compare", __doc__, required=("configs", "workdir"))
_FLAGS = COMMAND.flags
flags.DEFINE_list("configs", None, "Config names under configs/ (or .py paths), each with an "
                  "optional :variant, e.g. lsgan:cifar.", flag_values=_FLAGS)
flags.DEFINE_string("data", "", "Training data: a folder or dataset name (\"\" = each config's).",
                    flag_values=_FLAGS)
flags.DEFINE_string("eval_data", "", "A folder to evaluate on (e.g. CIFAR-10's test folder); "
                    "\"\" = the eval split of --data.", flag_values=_FLAGS)
flags.DEFINE_integer("steps", 0, "Training steps per config (0 = each config's own).",
                     flag_values=_FLAGS)
flags.DEFINE_integer("image_size", 0, "Training and eval image size (0 = each config's).",
                     flag_values=_FLAGS)
flags.DEFINE_integer("batch_size", 0, "Global training batch size (0 = each config's).",
                     flag_values=_FLAGS)
flags.DEFINE_integer("eval_images", 0, "About how many images to evaluate on (0 = each "
                     "config's eval.num_images).", flag_values=_FLAGS)
flags.DEFINE_integer("seed", 0, "The seed of every config.", flag_values=_FLAGS)
flags.DEFINE_multi_string("override", [], "key=value applied to every config after the budget, "
                          "e.g. --override=model.generator_kwargs.features=32.",
                          flag_values=_FLAGS)
flags.DEFINE_string("workdir", None, "Each config trains into <workdir>/<config>.",
                    flag_values=_FLAGS)
flags.DEFINE_string("out", "docs", "Where comparison.md and comparison.png go.",
                    flag_values=_FLAGS)
flags.DEFINE_integer("grid_rows", 8, "Eval images in the sample grid.", flag_values=_FLAGS)


def _header(argv: Sequence[str]) -> str:
  """Title, the exact command, machine and date, for the top of comparison.md."""
  command = " ".join(["python -m colorjax.compare", *argv])
  device = jax.devices()[0]
  return (f"# Method comparison\n\nGenerated by `colorjax/compare.py` on "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}: {os.cpu_count()} CPU cores "
          f"({platform.processor() or platform.machine()}), {jax.device_count()} JAX device(s) "
          f"of kind {device.device_kind!r}, JAX {jax.__version__}.\n\n```\n{command}\n```")


def _compare(args: cli.Args, argv: Sequence[str]) -> int:
  cli.use_absl_logging(None)
  tf_utils.hide_tf_from_accelerators()
  budget = Budget(steps=args.steps, image_size=args.image_size, batch_size=args.batch_size,
                  eval_images=args.eval_images, seed=args.seed, data=args.data,
                  eval_data=args.eval_data)
  rows, facts = compare(args.configs, config_files.load, budget, args.workdir, args.out,
                        overrides=args.override, header=_header(argv),
                        grid_rows=args.grid_rows)
  print(markdown_table(rows))
  print(json.dumps(facts))
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m colorjax.compare` with `argv` (default: sys.argv[1:]); returns the exit code."""
  argv = list(sys.argv[1:] if argv is None else argv)
  return COMMAND.run(lambda args: _compare(args, argv), argv)


if __name__ == "__main__":
  sys.exit(main())
