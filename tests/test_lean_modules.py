"""The training step's fifth-pass savings (issue #16) change no value and no handler's view:
lean network modules name, order and register their parameters as Pyro's ``to_pyro_module_``
does and leave out only idle parameter statements; the standard Normal prior is
``Normal(0, 1)`` bit for bit."""

import copy
import math
import pickle

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.nn.module import PyroModule, PyroSample, to_pyro_module_
from pyro.poutine.messenger import Messenger
from torch import nn

from pyro_vae import nn as vae_nn
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.inference.distributed import GlobalBatchNoise
from pyro_vae.inference.objectives import ReparamELBO, scale_sites
from pyro_vae.inference.weights import record_sites
from pyro_vae.models.priors import StandardNormal, StandardNormalPrior
from pyro_vae.pyro_modules import LeanNetwork, to_pyro_network_


def _networks():
    torch.manual_seed(0)
    mlp, _ = vae_nn.mlp_encoder_body((1, 8, 8), [16, 12], "relu")
    gated, _ = vae_nn.mlp_encoder_body((1, 8, 8), [16], "gated")
    conv, _ = vae_nn.conv_encoder_body((1, 8, 8), [4, 8], 16, "elu", batch_norm=True)
    return {"mlp": mlp, "gated": gated, "conv": conv}


class _Root(PyroModule):
    def __init__(self, net, convert):
        super().__init__()
        convert(net)
        self.net = net

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("kind", ["mlp", "gated", "conv"])
def test_lean_network_is_to_pyro_module_in_names_order_outputs_and_trace(kind):
    pyro.clear_param_store()
    ours, theirs = _networks()[kind], _networks()[kind]
    x = torch.rand(3, 1, 8, 8)
    a, b = _Root(ours, to_pyro_network_), _Root(theirs, to_pyro_module_)
    assert list(a.state_dict()) == list(b.state_dict())
    assert [name for name, _ in a.named_modules()] == [name for name, _ in b.named_modules()]
    for (name, mine), (_, pyros) in zip(a.named_modules(), b.named_modules()):
        holds = any(True for _ in pyros.parameters()) or any(True for _ in pyros.buffers())
        assert isinstance(mine, PyroModule) == holds, name  # parameter-free modules stay plain torch
        assert isinstance(mine, type(pyros)) or not holds
        assert isinstance(mine, LeanNetwork) == (holds and name != "")
    trace_a = poutine.trace(a).get_trace(x)
    pyro.clear_param_store()
    trace_b = poutine.trace(b).get_trace(x)
    params_a = [n for n, s in trace_a.nodes.items() if s["type"] == "param"]
    params_b = [n for n, s in trace_b.nodes.items() if s["type"] == "param"]
    assert params_a == params_b and len(params_a) == len(list(b.parameters()))  # SVI sees every parameter
    assert torch.equal(trace_a.nodes["_RETURN"]["value"], trace_b.nodes["_RETURN"]["value"])
    pyro.clear_param_store()


class _ParamCounter(Messenger):
    """Counts the parameter statements that reach it; declares it ignores stored parameters."""

    ignores_stored_params = True

    def __init__(self):
        super().__init__()
        self.params = []

    def _process_message(self, msg):
        if msg["type"] == "param":
            self.params.append(msg["name"])


def test_lean_network_leaves_out_only_idle_parameter_statements():
    pyro.clear_param_store()
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5))
    n_params = len(list(guide.encoder.parameters()))
    with _ParamCounter() as first:
        guide(x)
    assert len(first.params) == n_params  # nothing stored yet: every statement is issued and registers
    assert set(first.params) <= set(pyro.get_param_store().keys())
    with _ParamCounter() as idle:
        guide(x)
    assert idle.params == []  # stored, and the only handler ignores such statements
    # The handlers around the trainer's step ignore them too (a KL weight, the global-batch noise).
    with GlobalBatchNoise(torch.Generator(), slice(0, 3), 3), _ParamCounter() as in_step:
        scale_sites(guide, ["z"], 0.5)(x)
    assert in_step.params == []
    with _ParamCounter() as counter, poutine.trace() as tracer:  # a trace looks at them: all issued
        guide(x)
    assert len(counter.params) == n_params
    assert len([s for s in tracer.trace.nodes.values() if s["type"] == "param"]) == n_params
    # A name bound to another tensor in the store: the statement is issued and Pyro synchronises.
    name = first.params[0]
    other = torch.nn.Parameter(torch.zeros_like(pyro.get_param_store()._params[name]))
    pyro.get_param_store()._params[name] = other
    with _ParamCounter() as again:
        guide(x)
    assert again.params == [name]
    pyro.clear_param_store()


def test_lean_network_survives_pickle_and_deepcopy_as_a_lean_module():
    model, _ = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    z = torch.randn(3, 2)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(copied.decoder) is type(model.decoder) and isinstance(copied.decoder, LeanNetwork)
        assert torch.equal(copied.decode_mean(z), model.decode_mean(z))


def test_fast_path_gives_the_same_loss_and_gradients_with_pyro_modules_as_with_lean_ones():
    """The same VAE with Pyro's to_pyro_module_ networks (before issue #16's fifth pass)."""
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16]), (1, 8, 8))
    twin_model, twin_guide = copy.deepcopy(model), copy.deepcopy(guide)
    for module in (twin_model.decoder, twin_guide.encoder):
        for sub in module.modules():
            if isinstance(sub, LeanNetwork):
                sub.__class__ = next(c for c in type(sub).__mro__ if c is not LeanNetwork and issubclass(c, PyroModule)
                                     and c.__bases__[0] is not LeanNetwork)
    for root in (twin_model, twin_guide):  # the model and guide classes are lean too (sixth pass): plain copies
        cls = type(root)
        root.__class__ = type(cls.__name__, (PyroModule,), {k: v for k, v in cls.__dict__.items()
                                                             if k not in ("__dict__", "__weakref__")})
    assert not any(isinstance(m, LeanNetwork) for m in twin_model.modules())
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.4))
    pyro.clear_param_store()
    results = []
    for m, g in ((model, guide), (twin_model, twin_guide)):
        ReparamELBO().differentiable_loss(m, g, x)  # registers the parameters: the lean reads are idle after it
        pyro.set_rng_seed(3)
        loss = ReparamELBO().differentiable_loss(m, g, x)
        grads = torch.autograd.grad(loss, [*m.parameters(), *g.parameters()])
        results.append((loss, grads))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    pyro.clear_param_store()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_standard_normal_is_normal_zero_one_bit_for_bit(dtype):
    torch.manual_seed(0)
    z = (3 * torch.randn(4, 5, dtype=dtype)).requires_grad_()
    loc = torch.randn(4, 5, dtype=dtype, requires_grad=True)
    scale = (torch.rand(4, 5, dtype=dtype) * 2 + 0.01).requires_grad_()
    ours = StandardNormal.like(z, (4, 5))
    theirs = dist.Normal(torch.zeros(4, 5, dtype=dtype), 1.0)
    lp_a, lp_b = ours.log_prob(z), theirs.log_prob(z)
    assert torch.equal(lp_a, lp_b)
    assert torch.equal(*(torch.autograd.grad(lp.sum(), z)[0] for lp in (lp_a, lp_b)))
    q = dist.Normal(loc, scale)
    kl_a, kl_b = torch.distributions.kl_divergence(q, ours), torch.distributions.kl_divergence(q, theirs)
    assert torch.equal(kl_a, kl_b)
    for a, b in zip(torch.autograd.grad(kl_a.sum(), [loc, scale]), torch.autograd.grad(kl_b.sum(), [loc, scale])):
        assert torch.equal(a, b)
    # The closed form, by hand: KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - log s^2) / 2; log p(0) = -log sqrt(2 pi).
    m, s = loc.detach()[0, 0].item(), scale.detach()[0, 0].item()
    assert kl_a[0, 0].item() == pytest.approx((s * s + m * m - 1 - math.log(s * s)) / 2, rel=1e-5)
    assert ours.log_prob(torch.zeros((), dtype=dtype)).item() == pytest.approx(-0.5 * math.log(2 * math.pi))
    # Draws, expansion and the prior's shape are Normal's.
    torch.manual_seed(1)
    a = ours.expand((2, 4, 5)).sample()
    torch.manual_seed(1)
    b = theirs.expand((2, 4, 5)).sample()
    assert torch.equal(a, b) and type(ours.expand((2, 4, 5))) is StandardNormal
    prior = StandardNormalPrior(5).distribution(z, 4)
    assert prior.batch_shape == (4,) and prior.event_shape == (5,) and prior.base_dist.loc.dtype == dtype


def test_bernoulli_images_log_prob_is_independent_bernoulli_bit_for_bit():
    from pyro_vae.likelihoods import BinaryBernoulli, BinaryBernoulliImages

    torch.manual_seed(0)
    logits = (3 * torch.randn(2, 5, 1, 4, 4)).requires_grad_()  # [particles, batch, C, H, W]
    x = torch.bernoulli(torch.full((5, 1, 4, 4), 0.4))  # broadcast against the particles
    ours = BinaryBernoulliImages(BinaryBernoulli(logits=logits, validate_args=False), 3)
    theirs = dist.Independent(BinaryBernoulli(logits=logits, validate_args=False), 3)
    a, b = ours.log_prob(x), theirs.log_prob(x)
    assert a.shape == (2, 5) and torch.equal(a, b)
    assert torch.equal(*(torch.autograd.grad(v.sum(), logits)[0] for v in (a, b)))
    # By hand: sum over pixels of x log sigmoid(l) + (1 - x) log sigmoid(-l).
    by_hand = (x * torch.nn.functional.logsigmoid(logits) + (1 - x) * torch.nn.functional.logsigmoid(-logits))
    assert torch.allclose(a, by_hand.sum((-3, -2, -1)), rtol=1e-6)
    expanded = ours.expand((3, 2, 5))  # a particle plate expands it: still this class
    assert type(expanded) is BinaryBernoulliImages and expanded.log_prob(x).shape == (3, 2, 5)


def test_event_expands_to_its_own_shape_as_itself_and_otherwise_as_independent():
    from pyro_vae.distributions import Event

    torch.manual_seed(0)
    base = dist.Normal(torch.randn(4, 3), torch.rand(4, 3) + 0.5)
    ours, theirs = Event(base, 1), base.to_event(1)
    assert ours.expand((4,)) is ours and ours.expand(torch.Size([4])) is ours  # a plate's no-op broadcast
    wider_a, wider_b = ours.expand((2, 4)), theirs.expand((2, 4))
    assert wider_a.batch_shape == wider_b.batch_shape == (2, 4) and wider_a.event_shape == (3,)
    z = torch.randn(2, 4, 3)
    assert torch.equal(wider_a.log_prob(z), wider_b.log_prob(z))
    # Inside a plate of the same size the site's distribution is the very object the program built.
    with poutine.trace() as tracer, pyro.plate("data", 4):
        pyro.sample("z", ours)
    assert tracer.trace.nodes["z"]["fn"] is ours


class _Sampler(LeanNetwork, PyroModule):
    """A lean root module with a PyroSample read twice a call (one statement, cached per call)."""

    def __init__(self):
        super().__init__()
        self.w = PyroSample(dist.Normal(0.0, 1.0))

    def forward(self):
        return self.w + self.w


def test_lean_outermost_call_keeps_pyro_modules_context_and_hands_module_local_params_to_pyro(monkeypatch):
    calls = []
    original = PyroModule.__call__

    def counting(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(PyroModule, "__call__", counting)
    module = _Sampler()
    with poutine.trace() as tracer:
        first = module()
    assert [n for n, s in tracer.trace.nodes.items() if s["type"] == "sample"] == ["w"]  # one statement, cached
    assert torch.equal(first, 2 * tracer.trace.nodes["w"]["value"])
    context = module._pyro_context
    assert context.active == 0 and context.used and context.cache == {}  # cleared on the way out
    assert not torch.equal(module(), first) and calls == []  # a new draw each call; the lean path
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    assert guide.encoder is guide._modules["encoder"] and model.decoder is model._modules["decoder"]
    with pyro.settings.context(module_local_params=True):
        _Sampler()()
    assert calls == ["_Sampler"]  # with module-local parameters on, the call is PyroModule's
