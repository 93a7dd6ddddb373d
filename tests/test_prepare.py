"""The prepare command (colorjax/prepare.py) in process. Its library, a folder of photos -> TFDS:
tests/data/test_prepare.py; killed mid-run: tests/end_to_end/test_prepare.py."""

import importlib.util

import pytest


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                    reason="only checks the message shown when torch is absent")
def test_convert_command_without_torch_explains(tmp_path, capsys):
  from colorjax import prepare  # pylint: disable=g-import-not-at-top
  (tmp_path / "x.pth").write_bytes(b"not read without torch")
  assert prepare.main([f"--src={tmp_path / 'x.pth'}", f"--fid_weights={tmp_path / 'y.npz'}"]) == 2
  (line,) = capsys.readouterr().err.splitlines()
  assert line.startswith("error: ") and "needs torch" in line, line
  assert not (tmp_path / "y.npz").exists()
