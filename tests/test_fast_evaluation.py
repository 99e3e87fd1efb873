"""The estimator's fast paths for the rich models (issue #19/#16) against direct references:
the logsumexp that skips exp's slow path against torch's, the VampPrior fixed for a whole
estimate against Pyro's MixtureSameFamily at every chunk, and the IAF network with its
context projected once against Pyro's conditional MADE."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pyro.distributions.transforms as T
import pytest
import torch

from mixtures import random_mixture_and_draws
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.distributions import LOGSUMEXP_FLOOR, logsumexp
from pyro_vae.guides import flows
from pyro_vae.guides.flows import ContextProjectedARN, condition
from pyro_vae.inference.loglik import importance_log_likelihood
from pyro_vae.models.priors import fixed_priors

SHAPE = (1, 4, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsumexp_is_torchs_with_far_terms_infinities_and_nan(dtype):
    generator = torch.Generator().manual_seed(0)
    # Rows spread over thousands of nats (most terms far below the largest), rows with terms
    # just inside and just beyond the floor, and rows of -inf, with an inf and with a NaN.
    x = torch.randn(40, 300, generator=generator, dtype=torch.float64) * 1000
    x[5] = -torch.rand(300, generator=generator, dtype=torch.float64) * 30  # all within 30 nats: every term counts
    x[6] = torch.linspace(-LOGSUMEXP_FLOOR - 20, 0, 300, dtype=torch.float64)
    x[7] = -math.inf
    x[8, 3] = math.inf
    x[9, 4] = math.nan
    x[10, :] = -math.inf
    x[10, 9] = -2.5
    x = x.to(dtype)
    ours, torchs = logsumexp(x, -1), torch.logsumexp(x, -1)
    assert torch.equal(ours.isnan(), torchs.isnan())
    assert torch.equal(ours[~ours.isnan()], torchs[~torchs.isnan()])  # bit for bit
    assert ours[7] == -math.inf and ours[8] == math.inf and ours[10] == -2.5
    # Over the other dimension, and the gradient is the softmax.
    torch.testing.assert_close(logsumexp(x[11:20].T, 0), torch.logsumexp(x[11:20].T, 0), rtol=0, atol=0)
    leaf = x[5:7].clone().requires_grad_()
    logsumexp(leaf, -1).sum().backward()
    torch.testing.assert_close(leaf.grad, torch.softmax(x[5:7], -1))


def vamp_vae(pseudo_inputs=6):
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], prior="vamp", pseudo_inputs=pseudo_inputs,
                                         min_scale=0.01), SHAPE)
    with torch.no_grad():  # pseudo-inputs far apart, posteriors narrow: components many nats apart
        model.latent_prior.set_pseudo_inputs(torch.bernoulli(torch.full((pseudo_inputs,) + SHAPE, 0.5)))
        for parameter in guide.parameters():
            parameter.mul_(3.0)
    return model, guide


def images(n=3):
    return torch.bernoulli(torch.full((n,) + SHAPE, 0.4), generator=torch.Generator().manual_seed(1))


def test_vamp_prior_estimate_is_the_mixture_same_family_one_with_the_encoder_run_once(monkeypatch):
    model, guide = vamp_vae()
    x = images()
    calls = []
    hook = guide.encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    torch.manual_seed(5)
    fast = importance_log_likelihood(model, guide, x, k=60, batch_size=1, k_chunk=20)  # 9 chunks
    hook.remove()
    # The pseudo-inputs (6 rows) went through the encoder once, the images once per chunk (the
    # guide's pairing with the model is probed only when the programs fail).
    assert calls.count(6) == 1 and calls.count(1) == 9
    # The reference: at every chunk, p(z) = MixtureSameFamily over q(z | u_k), in float64.
    prior = model.latent_prior

    def reference_prior(like, batch_size):
        loc, scale = guide.encoder(prior.pseudo_inputs)
        mixture = dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(len(loc), dtype=torch.float64)),
                                         dist.Normal(loc.double(), scale.double()).to_event(1))
        return _AsFloat(mixture.expand([batch_size]))

    monkeypatch.setattr(prior, "distribution", reference_prior)
    torch.manual_seed(5)
    reference = importance_log_likelihood(model, guide, x, k=60, batch_size=1, k_chunk=20)
    assert fast.log_likelihood.std() > 0.1  # not a degenerate case
    torch.testing.assert_close(fast.log_likelihood, reference.log_likelihood, rtol=0, atol=1e-4)
    torch.testing.assert_close(fast.ess, reference.ess, rtol=1e-4, atol=0)


class _AsFloat(dist.TorchDistribution):
    """A float64 distribution read at float32 values, its log-density returned as float32."""

    def __init__(self, base):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return _AsFloat(self.base.expand(batch_shape))

    def log_prob(self, value):
        return self.base.log_prob(value.double()).float()


def test_a_fixed_prior_gives_the_same_bits_and_still_trains():
    model, guide = vamp_vae()
    x = images()
    torch.manual_seed(2)
    fixed = importance_log_likelihood(model, guide, x, k=40, batch_size=2, k_chunk=16)
    torch.manual_seed(2)
    unfixed = importance_log_likelihood.__wrapped__(model, guide, x, k=40, batch_size=2, k_chunk=16)
    assert torch.equal(fixed.log_likelihood, unfixed.log_likelihood)  # the same mixture, made once
    # With autograd on, a fixed prior builds its mixture afresh at every call: each graph is
    # its own, and the pseudo-inputs get a gradient from both.
    z = torch.randn(5, 3)
    with fixed_priors(model):
        for _ in range(2):
            model.prior(z, 5).log_prob(z).sum().backward()
    single = model.latent_prior.raw_pseudo_inputs.grad.clone()
    model.latent_prior.raw_pseudo_inputs.grad = None
    model.prior(z, 5).log_prob(z).sum().backward()
    torch.testing.assert_close(single, 2 * model.latent_prior.raw_pseudo_inputs.grad)
    assert model.latent_prior._fixed_mixtures is None  # the block leaves nothing behind


def iaf_guide(steps=2):
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16], flow="iaf", flow_steps=steps), SHAPE)
    with torch.no_grad():  # off the identity start, so each step's network matters
        for parameter in guide.steps.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model, guide


def test_iaf_network_with_its_context_projected_once_is_pyros():
    _, guide = iaf_guide()
    guide = guide.double()
    x = images(4).double()
    h = guide.encoder.features(x)  # [4, 16]
    z = torch.randn(7, 4, 3, dtype=torch.float64)  # 7 draws per context
    with torch.no_grad():
        for step in guide.steps:
            projected = condition(step, h)
            assert isinstance(projected.arn, ContextProjectedARN)
            pyros = step.condition(h)
            for ours, theirs in zip(projected.arn(z), pyros.arn(z)):
                torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
            y = projected(z)
            torch.testing.assert_close(y, pyros(z), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(projected.log_abs_det_jacobian(z, y), pyros.log_abs_det_jacobian(z, pyros(z)),
                                       rtol=1e-12, atol=1e-12)
    # Pyro's inverse (the autoregressive recursion over the permutation; it starts from float32
    # zeros) runs through the projected network from a fresh transform.
    guide = guide.float()
    h, z = h.float(), z.float()
    with torch.no_grad():
        for step in guide.steps:
            torch.testing.assert_close(condition(step, h).inv(step.condition(h)(z)), z, rtol=1e-4, atol=1e-4)
    # With autograd on (training), the steps are Pyro's own.
    assert isinstance(condition(guide.steps[0], h), T.AffineAutoregressive)
    assert not isinstance(condition(guide.steps[0], h).arn, ContextProjectedARN)


def test_iaf_estimate_is_the_one_through_pyros_network(monkeypatch):
    model, guide = iaf_guide()
    x = images()
    torch.manual_seed(3)
    fast = importance_log_likelihood(model, guide, x, k=50, k_chunk=20)
    monkeypatch.setattr(flows.ContextProjectedARN, "fits", staticmethod(lambda step: False))
    torch.manual_seed(3)
    pyros = importance_log_likelihood(model, guide, x, k=50, k_chunk=20)
    torch.testing.assert_close(fast.log_likelihood, pyros.log_likelihood, rtol=0, atol=1e-4)
    torch.testing.assert_close(fast.ess, pyros.ess, rtol=1e-4, atol=0)


def test_mixture_density_in_row_blocks_is_the_whole_one_and_mixture_same_familys(monkeypatch):
    from pyro_vae.models import priors

    k = 7
    logits, loc, scale, z = random_mixture_and_draws(4, loc_spread=3, scales=(0.01, 1.0), noise=0.05, components=k)
    whole = priors.DiagonalNormalMixture(logits, loc, scale, [4]).log_prob(z)
    monkeypatch.setattr(priors, "BLOCK_BYTES", 8 * k * 5)  # blocks of 5 of the 12 rows: 5, 5, 2
    blocked = priors.DiagonalNormalMixture(logits, loc, scale, [4]).log_prob(z)
    assert torch.equal(blocked, whole)
    reference = dist.MixtureSameFamily(dist.Categorical(logits=logits.double()),
                                       dist.Normal(loc.double(), scale.double()).to_event(1)).log_prob(z.double())
    torch.testing.assert_close(blocked.double(), reference, rtol=1e-6, atol=1e-4)
    components = dist.Normal(loc, scale).log_prob(z[..., None, :]).sum(-1)  # [3, 4, K]
    assert components.min() < -1000  # far components: terms on exp's slow path
