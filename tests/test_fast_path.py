"""The speed-ups change no numbers: the fast ELBO equals Pyro's Trace_ELBO and
TraceMeanField_ELBO (loss and gradients, same draws), and fused Adam equals Adam."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.inference.objectives import ReparamELBO, scale_sites
from pyro_vae.inference.train import make_adam


def _loss_and_grads(objective, model, guide, x, seed, params):
    for p in params:
        p.grad = None
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model, guide, x)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


@pytest.mark.parametrize("network", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian-learned"])
@pytest.mark.parametrize("analytic_kl,reference", [(False, Trace_ELBO), (True, TraceMeanField_ELBO)])
@pytest.mark.parametrize("particles", [1, 3])
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_fast_elbo_equals_pyro_elbo_on_the_same_draws(network, likelihood, analytic_kl, reference, particles, beta):
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(network=network, likelihood=likelihood, latent_dim=3, hidden_dims=[16],
                                         conv_channels=[4]), (1, 8, 8))
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.4))
    params = [*model.parameters(), *guide.parameters()]
    m, g = (model, guide) if beta == 1.0 else (scale_sites(model, ["z"], beta), scale_sites(guide, ["z"], beta))
    ours = ReparamELBO(particles, analytic_kl=analytic_kl)
    theirs = reference(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    loss_a, grads_a = _loss_and_grads(ours, m, g, x, 7, params)
    loss_b, grads_b = _loss_and_grads(theirs, m, g, x, 7, params)
    assert torch.allclose(loss_a, loss_b, rtol=1e-5)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    # Different draws give a different Monte Carlo loss: the comparison above is not vacuous.
    if not analytic_kl:
        other, _ = _loss_and_grads(ours, m, g, x, 8, params)
        assert not torch.allclose(other, loss_a)


def test_fast_elbo_refuses_a_non_reparameterized_guide():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(torch.full(x.shape, 0.5)))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(torch.full(x.shape, 0.3)))

    with pytest.raises(ValueError, match="not reparameterized"):
        ReparamELBO().differentiable_loss(model, guide, torch.zeros(4))


def test_fused_adam_takes_the_same_steps_as_adam():
    torch.manual_seed(0)
    a = torch.nn.Linear(10, 4)
    b = torch.nn.Linear(10, 4)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make_adam(list(a.parameters()), 1e-2), torch.optim.Adam(b.parameters(), 1e-2)
    assert opt_a.defaults.get("fused") is True  # the fast kernel is in use on this machine
    for _ in range(20):
        x = torch.randn(8, 10)
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_denormals_are_flushed_for_training_and_the_setting_restored():
    from pyro_vae.runs import denormals_are_flushed, flushed_denormals

    assert not denormals_are_flushed()
    with flushed_denormals():
        assert (torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0  # a subnormal becomes zero
        assert (torch.tensor([1e-30]) * 1.0).item() > 0  # normal small numbers are untouched
    assert not denormals_are_flushed()  # nothing leaks to the caller (hypothesis, say)
