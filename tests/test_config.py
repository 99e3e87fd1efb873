"""Configuration files and flags: types, ranges, unknown keys with suggestions."""

import pytest

from pyro_vae.config import Config
from pyro_vae.errors import ConfigError


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nlatent_dim = 5\nhidden_dims = [64]\n[train]\nlearning_rate = 0.01\n')
    config = Config.load(path)
    config.set("train.epochs", "3", source="--epochs")
    config.set("latent_dim", "7")
    config.validate()
    assert (config.model.latent_dim, config.model.hidden_dims, config.train.learning_rate, config.train.epochs) \
        == (7, [64], 0.01, 3)
    # What is saved reads back the same.
    again = tmp_path / "again.toml"
    again.write_text(config.dumps())
    assert Config.load(again) == config


@pytest.mark.parametrize("text,message", [
    ("[model]\nlatent_dims = 5\n", "unknown key 'latent_dims' in \\[model\\]; did you mean 'latent_dim'"),
    ("[modle]\nlatent_dim = 5\n", "unknown table \\[modle\\]; did you mean 'model'"),
    ("[sweep]\nseeds = 3\n", "has a \\[sweep\\] table, which `pyro-vae sweep --config .*` reads"),  # to train
    ("[model]\nlatent_dim = 'five'\n", "model.latent_dim must be a whole number"),
    ("[train]\nlearning_rate = true\n", "train.learning_rate must be a finite number"),
    ("[train]\nepochs = 2.5\n", "whole number"),
    ("model = 3\n", "must be a table"),
    ("[model\n", "not valid TOML"),
])
def test_bad_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.load(path)


@pytest.mark.parametrize("key,value,message", [
    ("train.learning_rate", -1.0, "learning_rate must be positive"),
    ("model.latent_dim", 0, "latent_dim must be between 1 and 4096"),
    ("train.k", 0, "k must be between 1 and"),
    ("model.likelihood", "bernouli", "did you mean 'bernoulli'"),
    ("data.dataset", "fashion", "did you mean 'fashion-mnist'"),
    ("train.device", "tpu", "device must be"),
])
def test_values_out_of_range_are_refused(key, value, message):
    config = Config()
    config.set(key, value)
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load("/nonexistent/config.toml")
