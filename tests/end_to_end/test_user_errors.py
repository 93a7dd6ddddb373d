"""User mistakes end in one clear line on stderr and a non-zero exit, never a traceback, and a
failed start leaves no workdir behind. Real subprocesses; each fails before compiling anything.
"""

import os
import re
import subprocess
import sys

import pytest
import skimage.data
from PIL import Image

from colorjax.data import splits
from tests.helpers import REPO_ROOT
from tests.helpers.launch import cpu_env

pytestmark = pytest.mark.slow  # End to end: real processes (tests/end_to_end/).


def run(module: str, *args: str, devices: int = 1) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                        env=cpu_env(devices), capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
  """stderr is exactly one `error: ...` line holding `fragments`; the exit code is non-zero."""
  lines = result.stderr.strip().splitlines()
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
  assert result.returncode != 0
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  return lines[0]


def two_photos_both_in_train(folder) -> str:
  """A folder of 2 photos whose 5% hash split leaves the eval split empty."""
  folder.mkdir()
  names = [n for n in (f"photo{i}.png" for i in range(100))
           if splits.hash_split(n, 5.0) == "train"][:2]
  for name, photo in zip(names, (skimage.data.astronaut(), skimage.data.coffee())):
    Image.fromarray(photo[:96, :96]).save(folder / name)
  return str(folder)


CONFIG = "--config=configs/lsgan.py:tiny"


@pytest.mark.parametrize("args, fragments", [
    (["--config=configs/lsgn.py"], ["config file configs/lsgn.py not found", "configs/lsgan.py"]),
    (["--config=configs/lsgan.py:cifr"], ["unknown config variant 'cifr'", "'quick'"]),
    ([CONFIG, "--config.batch_sise=4"],
     ["--config.batch_sise: no such config key; did you mean batch_size?"]),
    ([CONFIG, "--config.batch_size=four"], ["--config.batch_size=four", "expected an int"]),
    ([CONFIG, "--config.data.nme=x"], ["--config.data.nme: no such config key",
                                        "did you mean data.name?"]),
    ([CONFIG, "--config.batch_size"], ["--config.batch_size needs a value"]),
    ([CONFIG, "--workdr=runs/x"], ["'workdr'", "workdir"]),
    ([CONFIG], ["--workdir is required"]),
])
def test_command_line_mistakes(args, fragments, tmp_path):
  workdir = tmp_path / "run"
  extra = [] if args == [CONFIG] else [f"--workdir={workdir}"]
  result = run("colorjax.main", *args, *extra)
  assert_one_line_error(result, *fragments)
  assert result.returncode == 2
  assert not workdir.exists()


def test_data_mistakes_fail_before_training_and_leave_no_workdir(tmp_path):
  workdir = tmp_path / "run"
  (tmp_path / "empty").mkdir()
  cases = [
      ([f"--config.data.name={tmp_path / 'missing'}"], ["looks like a folder but does not exist"]),
      ([f"--config.data.name={tmp_path / 'empty'}"], ["no images", "found under"]),
      # The late failure of the issue: it used to train the whole run, then die at the eval.
      ([f"--config.data.name={two_photos_both_in_train(tmp_path / 'two')}"],
       ["'validation' split", "is empty", "--config.data.validation_percent"]),
      (["--config.data.image_size=20"], ["image_size=20", "divisible by 8"]),
  ]
  for args, fragments in cases:
    result = run("colorjax.main", CONFIG, f"--workdir={workdir}", *args)
    assert_one_line_error(result, *fragments)
    assert result.returncode == 2
    assert not workdir.exists(), args


def test_batch_not_divisible_by_the_devices(tmp_path):
  result = run("colorjax.main", CONFIG, f"--workdir={tmp_path / 'run'}",
               "--config.batch_size=3", devices=2)
  assert_one_line_error(result, "batch_size=3", "number of devices (2)")
  assert not (tmp_path / "run").exists()


def test_eval_colorize_and_export_without_a_checkpoint(tmp_path):
  workdir = tmp_path / "empty_run"
  workdir.mkdir()
  result = run("colorjax.main", CONFIG, f"--workdir={workdir}", "--mode=eval")
  assert_one_line_error(result, "no checkpoint in", "train first")
  assert os.listdir(workdir) == []
  photo = tmp_path / "cat.png"
  Image.fromarray(skimage.data.chelsea()[:32, :32]).save(photo)
  result = run("colorjax.colorize", f"--workdir={workdir}", str(photo), "-o",
               str(tmp_path / "out"), "--no_progress")
  assert_one_line_error(result, str(workdir))
  assert result.returncode == 2


def test_print_config_needs_no_workdir():
  result = run("colorjax.main", "--config=configs/lsgan.py:quick", "--config.batch_size=4",
               "--print_config")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "batch_size: 4" in result.stdout and "image_size: 32" in result.stdout
  assert "num_downs: 5" in result.stdout


def test_help_names_the_configs_and_the_way_to_list_keys():
  result = run("colorjax.main", "--help")
  assert result.returncode == 0, result.stderr[-2000:]
  for text in ("configs/lsgan.py", "configs/colorful.py", ":cifar", ":quick", ":tiny",
               "--print_config", "--verbosity"):
    assert text in result.stdout, text


COMMANDS = ("main", "compare", "colorize", "export", "serve", "prepare")


@pytest.mark.parametrize("module", COMMANDS)
def test_every_flag_has_help_and_shows_its_default(module, capsys):
  import importlib
  from colorjax.core import cli
  command = importlib.import_module(f"colorjax.{module}").COMMAND
  assert isinstance(command, cli.Command)
  assert importlib.import_module(f"colorjax.{module}").main(["--help"]) == 0
  printed = capsys.readouterr().out
  assert printed.strip() == command.help().strip()
  # The flag list, unwrapped: a note may span two lines.
  text = " ".join(printed.split("\nflags:\n", 1)[1].split())
  names = {command.flags[name].name for name in command.flags}
  for name in names:
    flag = command.flags[name]
    assert flag.help, (module, name)
    entry = re.search(rf"--(\[no\])?{name}: (.*?)(?= -(-|\w,--)\S+: | exit codes:|$)", text)
    assert entry, (module, name, text)
    assert ("(required" if name in command.required else "(default: ") in entry.group(2), entry


@pytest.mark.parametrize("module, args, fragments", [
    ("colorize", ["photo.jpg"], ["--workdir and --out are required"]),
    ("colorize", ["--workdir=w", "-o", "out"], ["no INPUT"]),
    ("colorize", ["--workdir=w", "-o", "out", "--quality=0", "a.jpg"], ["--quality=0", "[1, 100]"]),
    ("export", ["--workdr=w"], ["'workdr'", "Did you mean: workdir"]),
    ("serve", ["--workdir=w", "extra"], ["unexpected arguments: extra"]),
    ("prepare", ["--src=photos", "--name=x"], ["--data_dir is required", "--fid_weights"]),
])
def test_flag_mistakes_are_one_line(module, args, fragments):
  result = run(f"colorjax.{module}", *args)
  assert_one_line_error(result, *fragments, "--help lists the flags")
  assert result.returncode == 2


def test_commands_keep_their_flags_apart_and_forget_earlier_calls():
  from colorjax import colorize, compare, export, main, prepare, serve  # One process.
  modules = (colorize, compare, export, main, prepare, serve)
  assert len({id(module.COMMAND.flags) for module in modules}) == len(modules)
  first = colorize.parse_args(["--workdir", "w", "a.jpg", "-o", "o", "--overwrite",
                               "--quality", "50", "b.jpg"])
  assert (first.inputs, first.overwrite, first.quality) == (["a.jpg", "b.jpg"], True, 50)
  second = colorize.parse_args(["--workdir=w", "-o=o", "a.jpg"])
  assert (second.inputs, second.overwrite, second.quality) == (["a.jpg"], False, 95)


def test_a_bad_distributed_setting_is_one_line(tmp_path):
  """Started by hand (no launcher to check it first): the runtime's settings fail as one line."""
  env = dict(cpu_env(1), COLORJAX_HEARTBEAT_TIMEOUT="soon", JAX_COORDINATOR_ADDRESS="127.0.0.1:1",
             JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="0")
  result = subprocess.run([sys.executable, "-m", "colorjax.main", CONFIG,
                           f"--workdir={tmp_path / 'run'}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert_one_line_error(result, "COLORJAX_HEARTBEAT_TIMEOUT='soon'", "whole seconds")
  assert result.returncode == 2
  assert not (tmp_path / "run").exists()
