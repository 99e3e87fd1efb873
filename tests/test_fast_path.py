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
    channels = {"conv_channels": [4]} if network == "conv" else {}  # build_vae refuses them for an MLP
    model, guide = build_vae(ModelConfig(network=network, likelihood=likelihood, latent_dim=3, hidden_dims=[16],
                                         **channels), (1, 8, 8))
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


def test_site_recorder_gives_the_sites_of_pyro_trace_and_replay():
    """The hot paths' lean tracer records what poutine.trace + poutine.replay record:
    the same sites in the same order, same values (the model's latent replayed from the
    guide), observed flags, scales and log-densities."""
    from pyro import poutine

    from pyro_vae.inference.weights import guide_and_model_sites, sample_sites

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16]), (1, 4, 4))
    m, g = scale_sites(model, ["z"], 0.3), scale_sites(guide, ["z"], 0.3)
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.4))
    with pyro.plate("particles", 2, dim=-2):
        pyro.set_rng_seed(3)
        guide_sites, model_sites = guide_and_model_sites(m, g, x)
        pyro.set_rng_seed(3)
        guide_trace = poutine.trace(g).get_trace(x)
        model_trace = poutine.trace(poutine.replay(m, trace=guide_trace)).get_trace(x)
    for ours, theirs in ((guide_sites, sample_sites(guide_trace)), (model_sites, sample_sites(model_trace))):
        assert list(ours) == list(theirs)
        for name in ours:
            a, b = ours[name], theirs[name]
            assert a["is_observed"] == b["is_observed"] and a["scale"] == b["scale"] == (1.0 if name == "x" else 0.3)
            assert torch.equal(a["value"], b["value"])
            assert torch.equal(a["fn"].log_prob(a["value"]), b["fn"].log_prob(b["value"]))
    assert model_sites["z"]["value"] is guide_sites["z"]["value"]
    assert model_sites["z"]["value"].shape == (2, 5, 3)


def test_site_recorder_leaves_the_param_store_as_pyro_would():
    """A PyroModule run first under the recorder still registers its parameters in Pyro's
    param store (so Pyro's SVI finds them), and a pyro.param whose stored value differs
    from its initial value reads the stored one."""
    from pyro.infer import SVI

    from pyro_vae.inference.weights import record_sites

    pyro.clear_param_store()
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5))
    ReparamELBO().differentiable_loss(model, guide, x)
    store = pyro.get_param_store()
    own = {id(p) for p in [*model.parameters(), *guide.parameters()]}
    assert {id(store._params[name]) for name in store.keys()} == own
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), Trace_ELBO())
    before = [p.detach().clone() for p in guide.parameters()]
    svi.step(x)
    assert all(not torch.equal(a, p) for a, p in zip(before, guide.parameters()))

    pyro.param("c", torch.tensor(5.0))

    def program():
        pyro.sample("y", dist.Normal(pyro.param("c", torch.nn.Parameter(torch.tensor(0.0))), 1.0), obs=torch.tensor(1.0))

    sites = record_sites(program)
    assert sites["y"]["fn"].loc.item() == 5.0
    pyro.clear_param_store()
