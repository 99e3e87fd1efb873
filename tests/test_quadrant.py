"""Quadrant completion (a conditional VAE conditioned on part of the image): the masks, the
likelihood over the missing pixels only, log p(x_m | x_g) against quadrature, and the CLI."""

from __future__ import annotations

import json
import math

import pyro
import pytest
import torch
from pyro import poutine

from pyro_vae.build import build_vae
from pyro_vae.cli import main
from pyro_vae.config import ModelConfig
from pyro_vae.errors import ConfigError
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.models.quadrant import quadrant_mask


def test_masks_give_the_quadrants_in_order():
    one, two, three = (quadrant_mask((1, 4, 6), g)[0] for g in (1, 2, 3))
    assert one.sum() == 6 and one[:2, :3].all()
    assert two.sum() == 12 and two[:2].all()
    assert three.sum() == 18 and three[2:, :3].all() and not three[2:, 3:].any()
    with pytest.raises(ValueError):
        quadrant_mask((1, 4, 4), 4)


def test_only_the_missing_pixels_are_observed():
    model, guide = build_vae(ModelConfig(model="quadrant", given_quadrants=2, latent_dim=3, hidden_dims=[16]),
                             (1, 6, 6))
    x = torch.bernoulli(torch.full((5, 1, 6, 6), 0.5))
    trace = poutine.trace(poutine.replay(model, trace=poutine.trace(guide).get_trace(x))).get_trace(x)
    site = trace.nodes["x"]
    assert site["value"].shape == (5, 1, 1, 18)  # the bottom half: 3 rows of 6
    z = trace.nodes["z"]["value"]
    logits = model.decoder(torch.cat([z, model.condition(x).flatten(1)], -1))[:, :, 3:, :].flatten(1)
    by_hand = torch.distributions.Bernoulli(logits=logits).log_prob(x[:, :, 3:, :].flatten(1)).sum(-1)
    assert torch.allclose(site["fn"].log_prob(site["value"]), by_hand, atol=1e-5)
    # The given half is input only: it changes the decoder's condition, not what is scored.
    assert torch.equal(model.condition(x)[:, :, 3:], torch.zeros(5, 1, 3, 6))


def test_conditional_log_likelihood_matches_quadrature_for_a_one_dimensional_latent():
    pyro.set_rng_seed(3)
    model, guide = build_vae(ModelConfig(model="quadrant", latent_dim=1, hidden_dims=[8]), (1, 4, 4))
    model.eval(), guide.eval()
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.4))
    with torch.no_grad():
        condition = model.condition(x)
        prior = model.prior(condition)  # Normal over z [4, 1]
        grid = torch.linspace(-12, 12, 8001)
        z = prior.base_dist.loc.T + prior.base_dist.scale.T * grid[:, None]  # [G, 4]
        output = model.missing(model.decoder_output(z[..., None], condition))
        log_lik = model.likelihood.distribution(output).log_prob(model.missing(x))  # [G, 4]
        log_density = torch.distributions.Normal(0.0, 1.0).log_prob(grid)[:, None]  # in standardised units
        step = grid[1] - grid[0]
        exact = torch.logsumexp(log_lik + log_density, 0) + math.log(step)
        estimate = importance_log_likelihood(model, guide, x, k=20000).log_likelihood
    assert torch.allclose(estimate, exact, atol=0.05), (estimate, exact)


def test_per_pixel_scales_are_refused_with_a_sentence():
    with pytest.raises(ConfigError, match="one scale for all pixels"):
        build_vae(ModelConfig(model="quadrant", likelihood="gaussian-learned-per-pixel"), (1, 8, 8))


def test_quadrant_completion_from_the_cli(idx_dir, tmp_path, capsys):
    run = tmp_path / "quad"
    assert main(["train", "--model", "quadrant", "--given-quadrants", "2", "--dataset", "idx", "--data-dir",
                 str(idx_dir), "--latent-dim", "4", "--hidden-dims", "64", "--epochs", "3", "--batch-size", "64",
                 "--run-dir", str(run)]) == 0
    assert (run / "completions.png").is_file()
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 4
    assert main(["evaluate", str(run), "--k", "200", "--limit", "50"]) == 0
    result = json.loads((run / "loglik.json").read_text())
    assert main(["evaluate", str(run), "--limit", "50"]) == 0
    elbo = json.loads((run / "evaluation.json").read_text())["elbo"]
    # log p(x_m | x_g): 392 missing pixels of the bottom half; the bound sits below it.
    assert elbo <= result["log_likelihood_mean"] + 3 * result["log_likelihood_stderr"]
    assert -392 * math.log(2) < result["log_likelihood_mean"] < 0
    capsys.readouterr()
    assert main(["plot", str(run), "--kind", "samples", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert f"the 'samples' figure is not drawn for a --model quadrant run, which completes given quadrants; use " \
           f"`pyro-vae plot {run} --kind completions` (or --kind curves)." in err, err
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "r.png")]) == 2
    assert f"use `pyro-vae plot {run} --kind completions`" in capsys.readouterr().err
    assert main(["plot", str(run), "--kind", "completions", "-o", str(tmp_path / "c.png")]) == 0
