"""Loading config files and overriding their keys (colorjax/core/config_files.py). Every config
file and its variants: tests/test_configs.py."""

import ml_collections
import pytest

from colorjax.core import config_files


def test_overrides_keep_types_and_reject_unknown_keys():
  config = config_files.load("lsgan")
  config_files.apply_overrides(config, ["optimizer.learning_rate=1e-3", "data.random_flip=false",
                                   "model.generator_kwargs.features=32", "loss.n_critic=2"])
  assert config.optimizer.learning_rate == 1e-3 and config.data.random_flip is False
  assert config.model.generator_kwargs.features == 32 and config.loss.n_critic == 2
  with pytest.raises(KeyError, match="batch_sise"):
    config_files.apply_overrides(config, ["batch_sise=4"])
  with pytest.raises(ValueError, match="key=value"):
    config_files.apply_overrides(config, ["batch_size"])
  assert isinstance(config_files.load("colorful"), ml_collections.ConfigDict)
