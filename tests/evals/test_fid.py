"""The "fid" evaluator (colorjax/evals/fid.py): sharded features, statistics across processes.

The Frechet distance: tests/evals/test_frechet.py; the Inception network and its weights:
tests/evals/test_inception.py (their random weights file: tests/evals/conftest.py).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from skimage import data

from colorjax.evals import frechet
from colorjax.evals import inception

pytestmark = pytest.mark.slow  # The evaluator on a built model, in 1 and 2 processes (~30 s each).

NUM_EVAL_PHOTOS = 10  # Two eval batches of 8: the second has 6 padded rows, which must not count.


def _photo_folder(root) -> str:
  """train/ and test/ folders of 32 px crops of different photos."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  photos = [getattr(data, n)()[..., :3] for n in ("astronaut", "chelsea", "coffee", "rocket")]
  for split, count in (("train", 2), ("test", NUM_EVAL_PHOTOS)):
    (root / split).mkdir(parents=True)
    for i in range(count):
      photo = photos[i % len(photos)]
      top, left = (37 * i) % (photo.shape[0] - 160), (53 * i) % (photo.shape[1] - 160)
      crop = photo[top:top + 160, left:left + 160]
      Image.fromarray(crop).resize((32, 32), Image.LANCZOS).save(root / split / f"{i:02d}.png")
  return str(root)


@pytest.fixture(scope="module")
def fid_config(tmp_path_factory, weights_file):
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config("lsgan")
  with config.unlocked():
    config.data.name = _photo_folder(tmp_path_factory.mktemp("photos"))
    config.eval.num_images = -1
    config.eval.batch_size = 8
    config.evals.fid.weights = weights_file[0]
  return config


def _fid_on_one_host(config) -> dict[str, float]:
  """The reference: every eval image's features in one array on this host, then FID."""
  from colorjax.color import lab  # pylint: disable=g-import-not-at-top
  from colorjax.core import distributed  # pylint: disable=g-import-not-at-top
  from colorjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from colorjax.training import run_setup  # pylint: disable=g-import-not-at-top
  dataset, _ = pipeline.create_eval_dataset(config)
  images = np.concatenate([batch["image"] for batch in dataset])
  assert len(images) == NUM_EVAL_PHOTOS
  setup = run_setup.RunSetup.create(config, distributed.make_data_mesh())
  state = setup.init_state()
  model_rgb = jax.jit(train.predictor(setup.parts).rgb)(state.ema, images)
  module, params = inception.load_inception(config.evals.fid.weights)
  sets = {"truth": images.astype(np.float32) / 255.0, "model": np.asarray(model_rgb),
          "gray": np.asarray(lab.gray_rgb(images))}
  stats = {}
  for name, rgb in sets.items():
    stats[name] = frechet.FidAccumulator()
    stats[name].update(np.asarray(inception.activations(module, params, rgb)))
  return {"fid": frechet.fid_from_accumulators(stats["model"], stats["truth"], method="cholesky"),
          "gray_fid": frechet.fid_from_accumulators(stats["gray"], stats["truth"],
                                                    method="cholesky")}


def _evaluator_fid(config, workdir) -> tuple[dict[str, float], int]:
  from colorjax.core import distributed  # pylint: disable=g-import-not-at-top
  from colorjax import train  # pylint: disable=g-import-not-at-top
  from colorjax.evals import common, fid  # pylint: disable=g-import-not-at-top
  from colorjax.training import run_setup, steps  # pylint: disable=g-import-not-at-top
  setup = run_setup.RunSetup.create(config, distributed.make_data_mesh())
  state = setup.init_state()
  (evaluator,) = [e for e in common.build(config, train.predictor(setup.parts), setup.mesh,
                                          workdir) if isinstance(e, fid.Fid)]
  return dict(evaluator.run(steps.eval_variables(state), 0)), evaluator.num_images


@pytest.fixture(scope="module")
def one_process_fid(fid_config, tmp_path_factory):
  """The evaluator's FID in this process: 8 devices, the eval batch sharded over them."""
  assert jax.device_count() == 8, "conftest sets 8 simulated CPU devices"
  return _evaluator_fid(fid_config, str(tmp_path_factory.mktemp("run")))


def test_fid_evaluator_matches_fid_of_all_features_on_one_host(fid_config, one_process_fid):
  results, num_images = one_process_fid
  assert num_images == NUM_EVAL_PHOTOS  # The padded rows are not counted.
  want = _fid_on_one_host(fid_config)
  assert results.keys() == want.keys()
  for key, value in want.items():
    assert results[key] == pytest.approx(value, rel=1e-4), key
  assert results["fid"] != pytest.approx(results["gray_fid"], rel=1e-3)  # Not degenerate.


# One of the 2 processes: the "fid" evaluator on a freshly initialised model, with every
# cross-process gather recorded.
_TWO_PROCESS_DRIVER = r'''
import importlib.util
import json
import sys

import jax
from jax.experimental import multihost_utils
import numpy as np

from colorjax.core import distributed

config_path, address, process_id, out = sys.argv[1:]
distributed.initialize(address, 2, int(process_id))
spec = importlib.util.spec_from_file_location("fid_config", config_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config()

crossed = []
gather = multihost_utils.process_allgather


def recording_gather(tree, tiled=False):
  crossed.extend({"shape": list(np.shape(x)), "dtype": str(x.dtype)} for x in jax.tree.leaves(tree))
  return gather(tree, tiled=tiled)


multihost_utils.process_allgather = recording_gather

from colorjax import train
from colorjax.evals import common, fid
from colorjax.training import run_setup, steps

setup = run_setup.RunSetup.create(config, distributed.make_data_mesh())
state = setup.init_state()
(evaluator,) = [e for e in common.build(config, train.predictor(setup.parts), setup.mesh,
                                        out + ".workdir") if isinstance(e, fid.Fid)]
results = dict(evaluator.run(steps.eval_variables(state), 0))
with open(out, "w") as f:
  json.dump({"results": results, "num_images": evaluator.num_images, "crossed": crossed,
             "processes": jax.process_count(), "devices": jax.device_count()}, f)
'''


def test_fid_with_two_processes_equals_one_process_and_only_statistics_cross(
    fid_config, one_process_fid, tmp_path):
  """2 processes of 2 CPU devices: each holds its own rows' features; only (count, sum, sum of
  outer products) per feature set cross between them."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.helpers import REPO_ROOT  # pylint: disable=g-import-not-at-top
  from tests.helpers import launch  # pylint: disable=g-import-not-at-top
  config_path = launch.write_config_file(str(tmp_path / "fid_config.py"), fid_config)
  address = f"127.0.0.1:{launch.free_port()}"
  outputs = [str(tmp_path / f"process_{i}.json") for i in range(2)]
  logs = [open(tmp_path / f"process_{i}.log", "w") for i in range(2)]
  # -c from the repository root: colorjax is imported from this checkout.
  processes = [subprocess.Popen([sys.executable, "-c", _TWO_PROCESS_DRIVER, config_path, address,
                                 str(i), outputs[i]], cwd=REPO_ROOT, env=launch.cpu_env(2),
                                stdout=logs[i], stderr=subprocess.STDOUT) for i in range(2)]
  try:
    codes = [p.wait(timeout=600) for p in processes]
  finally:
    for p, log in zip(processes, logs):
      if p.poll() is None:
        p.kill()
        p.wait()
      log.close()
  assert codes == [0, 0], "\n\n".join((tmp_path / f"process_{i}.log").read_text()[-3000:]
                                      for i in range(2))
  records = [json.load(open(path)) for path in outputs]
  assert all(r["processes"] == 2 and r["devices"] == 4 for r in records)
  results, num_images = one_process_fid
  for record in records:
    assert record["num_images"] == num_images == NUM_EVAL_PHOTOS
    for key, value in results.items():
      assert record["results"][key] == pytest.approx(value, rel=1e-4), key
  # Every process computed the same distance from the same summed statistics.
  assert records[0]["results"] == records[1]["results"]
  # What crossed: per feature set (truth, model, gray), its count, sum (2048,) and sum of outer
  # products (2048, 2048), as float64 bit patterns; never images or per-image features.
  dim = frechet.FEATURE_DIM
  statistics = sorted([[2], [2 * dim], [dim, 2 * dim]] * 3)
  for record in records:
    assert sorted(item["shape"] for item in record["crossed"]) == statistics, record["crossed"]
    assert {item["dtype"] for item in record["crossed"]} == {"uint32"}
