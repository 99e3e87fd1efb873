"""The training step's sixth-pass savings (issue #16) keep the VAE's Pyro programs what they
were: ``DrawNoiseNormal`` draws as ``Normal`` and reads log q at its own draw from the noise
(equal to ``Normal.log_prob`` to rounding, with the same total gradients; any other value is
``Normal``'s bit for bit), and ``FullPlate`` gives sites what ``pyro.plate`` gives them, less
the subsample site. Pyro's own ELBOs on the programs equal those on the plain programs."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.distributions import FullPlate, DrawNoiseNormal, Event
from pyro_vae.inference.objectives import make_objective


def _loc_and_raw_scale(dtype):
    torch.manual_seed(0)
    loc = torch.randn(4, 3, dtype=dtype).mul(2).requires_grad_()
    raw = torch.randn(4, 3, dtype=dtype).requires_grad_()
    return loc, raw


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draw_noise_normal_draws_as_normal_and_reads_log_q_at_its_draw_from_the_noise(dtype):
    loc, raw = _loc_and_raw_scale(dtype)
    scale = torch.nn.functional.softplus(raw) + 0.01
    torch.manual_seed(3)
    ours = DrawNoiseNormal(loc, scale, validate_args=False)
    z = ours.rsample()
    torch.manual_seed(3)
    reference = dist.Normal(loc, scale)
    assert torch.equal(z, reference.rsample())  # the same draw, bit for bit
    torch.manual_seed(3)
    eps = torch.randn(4, 3, dtype=dtype)
    by_hand = (-0.5 * eps ** 2 - math.log(math.sqrt(2 * math.pi))) - torch.log(scale)
    assert torch.equal(ours.log_prob(z), by_hand)  # its own draw: the noise form, taken
    assert torch.allclose(ours.log_prob(z), reference.log_prob(z), rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)
    # Any other value, even equal to the draw (a replayed z, DReG's frozen guide), is Normal's bit for bit.
    given = z.detach().clone()
    assert torch.equal(ours.log_prob(given), reference.log_prob(given))
    assert torch.equal(ours.log_prob(given + 1), reference.log_prob(given + 1))


def test_draw_noise_normal_has_normals_total_gradients_at_its_draw():
    """d/d loc log N(loc + s eps; loc, s) = 0 and d/ds = -1/s (through z and directly), as for Normal."""
    grads = []
    for cls in (DrawNoiseNormal, dist.Normal):
        loc, raw = _loc_and_raw_scale(torch.float64)
        scale = torch.nn.functional.softplus(raw) + 0.01
        torch.manual_seed(5)
        d = cls(loc, scale)
        z = d.rsample()
        (d.log_prob(z).sum() + (z ** 3).sum()).backward()  # and a term through z, as the decoder's
        grads.append((loc.grad, raw.grad))
        closed_loc = 3 * z.detach() ** 2
        closed_raw = (3 * z.detach() ** 2 * (z.detach() - loc.detach()) / scale.detach() - 1 / scale.detach()) \
            * torch.sigmoid(raw.detach())
        assert torch.allclose(loc.grad, closed_loc, rtol=1e-10, atol=1e-10)
        assert torch.allclose(raw.grad, closed_raw, rtol=1e-10, atol=1e-10)
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-12) and torch.allclose(grads[0][1], grads[1][1], rtol=1e-12)


def test_draw_noise_normal_expanded_by_a_plate_keeps_the_noise_of_its_own_draws():
    loc, raw = _loc_and_raw_scale(torch.float64)
    d = Event(DrawNoiseNormal(loc, raw.exp()), 1)
    with poutine.trace() as tracer, pyro.plate("particles", 2, dim=-2), FullPlate("data", 4):
        pyro.sample("z", d)
    site = tracer.trace.nodes["z"]
    assert site["fn"] is not d and site["value"].shape == (2, 4, 3)  # the plate expanded it; the copy drew
    reference = dist.Normal(loc, raw.exp()).expand((2, 4, 3)).to_event(1)
    assert torch.allclose(site["fn"].log_prob(site["value"]), reference.log_prob(site["value"]), rtol=1e-12)
    assert d.base_dist._draw is None  # the unexpanded original drew nothing


def _sites(trace):
    return {name: site for name, site in trace.nodes.items() if site["type"] == "sample"}


@pytest.mark.parametrize("outer", [None, "particles"])
def test_full_plate_gives_sites_what_pyro_plate_gives_them_less_the_subsample_site(outer):
    def program(plate):
        with plate("data", 5):
            a = pyro.sample("a", dist.Normal(0.0, 1.0))  # batch shape [] broadcast to the plate
            pyro.sample("b", dist.Normal(a, 1.0), obs=torch.zeros(5))
            pyro.param("p", torch.ones(5), event_dim=0)

    traces = []
    for plate in (pyro.plate, FullPlate):
        pyro.clear_param_store()
        with poutine.trace() as tracer:
            if outer:
                with pyro.plate(outer, 3, dim=-2):
                    program(plate)
            else:
                program(plate)
        traces.append(tracer.trace)
    theirs, ours = (_sites(t) for t in traces)
    assert "data" in theirs and site_is_subsample(theirs["data"]) and "data" not in ours
    assert [n for n in theirs if n != "data"] == list(ours)  # the outer plate's subsample site stays
    for name, site in ours.items():
        if site_is_subsample(site):
            continue
        assert site["cond_indep_stack"] == theirs[name]["cond_indep_stack"]  # frames: name, dim, size, counter
        assert site["fn"].batch_shape == theirs[name]["fn"].batch_shape == ((3, 5) if outer else (5,))
        assert site["scale"] == theirs[name]["scale"] == 1.0 and site["value"].shape == theirs[name]["value"].shape
    assert traces[1].nodes["p"]["value"].shape == (5,)


def _plain_programs(model, guide):
    """The VAE's model and guide as plain Pyro programs (``pyro.plate``, ``dist.Normal``,
    ``to_event``) on the same networks: what the programs were before the sixth pass."""
    def plain_guide(x):
        loc, scale = guide.encoder(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def plain_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(model.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=model.decoder(z), validate_args=False).to_event(3), obs=x)
    return plain_model, plain_guide


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO, "elbo", "analytic-kl", "iwae"])
def test_pyro_elbos_of_the_vae_programs_equal_those_of_the_plain_programs(elbo):
    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16]), (1, 4, 4))
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.4))
    params = [*model.parameters(), *guide.parameters()]
    # Pyro's classes, and the package's fast ELBOs and IWAE (K = 4)
    objective = (make_objective(elbo, k=4 if elbo == "iwae" else None) if isinstance(elbo, str)
                 else elbo(max_plate_nesting=1))
    results = []
    for m, g in ((model, guide), _plain_programs(model, guide)):
        for p in params:
            p.grad = None
        pyro.set_rng_seed(7)
        loss = objective.differentiable_loss(m, g, x)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in params]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=1e-5)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    pyro.set_rng_seed(8)  # other draws give another loss: the comparison is not vacuous
    if elbo not in (TraceMeanField_ELBO, "analytic-kl"):
        assert not torch.allclose(objective.differentiable_loss(model, guide, x).detach(), loss_a)


def test_same_shape_normal_and_binary_bernoulli_are_built_as_torch_builds_them():
    from pyro_vae.distributions import SameShapeNormal
    from pyro_vae.likelihoods import BinaryBernoulli

    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.1
    for ours, theirs in ((SameShapeNormal(loc, scale), dist.Normal(loc, scale)),
                         (SameShapeNormal(loc, scale[0]), dist.Normal(loc, scale[0])),  # broadcast: Normal's own path
                         (SameShapeNormal(0.0, scale), dist.Normal(0.0, scale))):
        assert ours.batch_shape == theirs.batch_shape and ours.event_shape == theirs.event_shape
        assert torch.equal(ours.loc, theirs.loc) and torch.equal(ours.scale, theirs.scale)
        wide = ours.expand((2, 4, 3))
        assert type(wide) is SameShapeNormal and wide.batch_shape == (2, 4, 3)
        assert torch.equal(wide.log_prob(torch.ones(2, 4, 3)), theirs.expand((2, 4, 3)).log_prob(torch.ones(2, 4, 3)))
    with pytest.raises(ValueError):  # argument validation is Normal's
        SameShapeNormal(loc, -scale, validate_args=True)
    logits = torch.randn(4, 784)
    ours, theirs = BinaryBernoulli(logits=logits), dist.Bernoulli(logits=logits)
    assert ours.batch_shape == theirs.batch_shape and torch.equal(ours.logits, theirs.logits)
    assert torch.equal(ours.probs, theirs.probs) and torch.equal(ours.mean, theirs.mean)
    x = torch.bernoulli(torch.full((4, 784), 0.5))
    wide = ours.expand((2, 4, 784))
    assert type(wide) is BinaryBernoulli and torch.allclose(wide.log_prob(x), theirs.log_prob(x).expand(2, 4, 784))
    assert torch.equal(BinaryBernoulli(probs=torch.full((3,), 0.25)).probs, torch.full((3,), 0.25))


def test_global_batch_noise_draws_for_the_guides_normal_and_log_q_reads_its_noise():
    """The trainer's GlobalBatchNoise supplies the guide's noise (from a generator, for the
    global batch): it must do so for DrawNoiseNormal as for a plain Normal (else each rank draws
    from its own RNG), and log q at that draw is read from the noise it gave."""
    from pyro_vae.inference.distributed import GlobalBatchNoise

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=3, hidden_dims=[16]), (1, 4, 4))
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.4))
    with poutine.trace() as tracer, GlobalBatchNoise(torch.Generator().manual_seed(5), slice(2, 6), 8):
        guide(x)
    site = tracer.trace.nodes["z"]
    loc, scale = guide.encode(x)
    eps = torch.randn(8, 3, generator=torch.Generator().manual_seed(5))[2:6]
    assert torch.equal(site["value"], loc + scale * eps)  # the generator's rows 2-5, not the torch RNG's
    by_hand = ((-0.5 * eps ** 2 - math.log(math.sqrt(2 * math.pi))) - torch.log(scale)).sum(-1)
    assert torch.equal(site["fn"].log_prob(site["value"]), by_hand)  # the noise path
    assert torch.allclose(by_hand, dist.Normal(loc, scale).to_event(1).log_prob(site["value"]), atol=1e-5)
