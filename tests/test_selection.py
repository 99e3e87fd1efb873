"""--select-by valid-loglik: the best epoch is the one with the highest validation
importance-sampled log-likelihood on a fixed random subset, with common random numbers."""

import json

import pytest
import torch

from pyro_vae.data.datasets import as_tensor
from pyro_vae.inference.checkpoint import BEST, LAST, load_checkpoint
from pyro_vae.inference.loglik import importance_log_likelihood
from test_train import small_config
from pyro_vae.runs import open_run, train_run


def test_select_by_valid_loglik_keeps_the_epoch_with_the_best_subset_estimate(idx_dir, tmp_path):
    config = small_config(idx_dir, **{"train.select_by": "valid-loglik", "train.select_k": 7,
                                      "train.select_examples": 25, "train.epochs": 3, "train.seed": 2})
    summary = train_run(config, tmp_path / "run", progress=False, log=lambda s: None)
    last, best = load_checkpoint(tmp_path / "run" / LAST), load_checkpoint(tmp_path / "run" / BEST)
    values = [row["valid_loglik"] for row in last["history"]]
    assert best["best_valid_elbo"] == max(values)
    assert best["epoch"] == 1 + values.index(max(values))
    assert summary["selection"] == ("best validation log-likelihood by importance sampling "
                                    "(K=7, 25 fixed random validation images, seed 2); a probability mass on "
                                    "binary data")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["selection"] == summary["selection"]

    # The recorded criterion is the estimator on the subset drawn from the seed, with the
    # importance draws reseeded: recomputing it on the best model gives the same number.
    run = open_run(tmp_path / "run", "best")
    valid = run.dataset().valid
    rows = torch.randperm(len(valid), generator=torch.Generator().manual_seed(2))[:25].sort().values
    torch.manual_seed(2)
    again = importance_log_likelihood(run.model, run.guide, as_tensor(valid.images[rows]), k=7).mean
    assert again == best["best_valid_elbo"]
    # Another subset of the same size gives a different number (the subset matters).
    torch.manual_seed(2)
    other = importance_log_likelihood(run.model, run.guide, as_tensor(valid.images[rows + 1]), k=7).mean
    assert other != again


def test_iwae_dreg_selects_by_the_validation_iwae_bound_by_default(idx_dir, tmp_path):
    config = small_config(idx_dir, **{"train.objective": "iwae-dreg", "train.k": 3, "train.epochs": 2})
    summary = train_run(config, tmp_path / "dreg", progress=False, log=lambda s: None)
    history = load_checkpoint(tmp_path / "dreg" / LAST)["history"]
    assert summary["selection"] == "best validation IWAE bound (K=3)"
    assert history[-1]["valid_elbo"] > history[0]["valid_elbo"]  # it trains


def test_more_selection_examples_than_validation_images_is_refused_before_training(idx_dir, tmp_path):
    """--select-examples 100000 on a 10,000-image split was accepted and recorded as used."""
    import pytest

    from pyro_vae.errors import ConfigError
    from pyro_vae.runs import open_dataset

    config = small_config(idx_dir, **{"train.select_by": "valid-loglik", "train.select_examples": 10**5})
    valid = len(open_dataset(config).valid)
    with pytest.raises(ConfigError, match=f"--select-examples 100000 is more than the {valid} images"):
        train_run(config, tmp_path / "run", progress=False, log=lambda s: None)
    assert not (tmp_path / "run").exists()
    config.train.select_examples = valid  # all of them, drawn as a fixed subset: accepted
    train_run(config, tmp_path / "all", progress=False, log=lambda s: None)


def test_a_continuous_likelihood_on_8_bit_images_is_selected_by_its_dequantized_mass(idx_dir, tmp_path):
    """A Gaussian's valid-loglik criterion was its density on the grey levels as they are (thousands
    of nats above any probability, and not the number evaluate --k reports): it is now the
    dequantized bound on the images' probability mass, on the same draws every epoch."""
    from pyro_vae.inference.dequantize import score_log_likelihood

    config = small_config(idx_dir, **{"train.select_by": "valid-loglik", "train.select_k": 5,
                                      "train.select_examples": 20, "train.epochs": 2, "train.seed": 1})
    config.data.binarize, config.model.likelihood, config.model.likelihood_scale = "none", "gaussian", 0.05
    summary = train_run(config.validate(), tmp_path / "run", progress=False, log=lambda s: None)
    assert summary["selection"].endswith("seed 1); a dequantized lower bound on 8-bit mass")
    history = load_checkpoint(tmp_path / "run" / LAST)["history"]
    assert all(row["valid_loglik"] < 0 for row in history)  # a log-probability (the density was above 0)

    run = open_run(tmp_path / "run", "best")
    valid = run.dataset().valid
    rows = torch.randperm(len(valid), generator=torch.Generator().manual_seed(1))[:20].sort().values
    images = as_tensor(valid.images[rows])
    torch.manual_seed(1)
    again, kind = score_log_likelihood(lambda x: importance_log_likelihood(run.model, run.guide, x, k=5), images,
                                       "unit-interval", False, seed=1)
    assert kind == "dequantized lower bound on 8-bit mass"
    assert again.mean == pytest.approx(load_checkpoint(tmp_path / "run" / BEST)["best_valid_elbo"], abs=1e-9)


def test_the_epoch_line_says_the_kinds_where_the_selecting_log_likelihood_is_not_of_the_elbos_kind(idx_dir,
                                                                                                     tmp_path):
    """A Gaussian on 8-bit images printed `valid ELBO -4361.19 ... valid log p(x) K=3 -8395.88 ... (selects)`:
    the ELBO a density on the grey levels, the log p(x) a dequantized bound on their probability mass,
    thousands of nats apart and read as an ELBO above log p(x). The line now says what each is; where
    both are of one kind (a Bernoulli's masses) it is as it was."""
    config = small_config(idx_dir, **{"train.select_by": "valid-loglik", "train.select_k": 5,
                                      "train.select_examples": 20, "train.epochs": 1})
    config.data.binarize, config.model.likelihood, config.model.likelihood_scale = "none", "gaussian", 0.05
    lines = []
    train_run(config.validate(), tmp_path / "gauss", progress=False, log=lines.append)
    epoch = next(line for line in lines if line.startswith("epoch   1"))
    assert "(selects; a dequantized lower bound on 8-bit mass, unlike the ELBO, a density (not comparable))" in epoch

    lines = []
    binary = small_config(idx_dir, **{"train.select_by": "valid-loglik", "train.select_k": 5,
                                      "train.select_examples": 20, "train.epochs": 1})
    train_run(binary, tmp_path / "bernoulli", progress=False, log=lines.append)
    epoch = next(line for line in lines if line.startswith("epoch   1"))
    assert "(selects)  " in epoch and "unlike the ELBO" not in epoch
