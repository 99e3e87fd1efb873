"""The importance-sampling estimator of log p(x) against closed forms and quadrature."""

import contextlib
import math

import pyro
import pytest
import torch
from pyro.infer import RenyiELBO

from linear_gaussian import PPCA, BernoulliLine
from pyro_vae.config import ModelConfig
from pyro_vae.inference.loglik import LogMeanExp, importance_log_likelihood
from pyro_vae.inference.objectives import IWAELoss, elbo_terms
from pyro_vae.inference.weights import log_importance_weights


@pytest.fixture
def ppca():
    return PPCA(latent_dim=2, data_dim=5, sigma=0.5)


@pytest.mark.parametrize("k", [1, 7, 100])
def test_exact_posterior_guide_gives_exact_log_likelihood_for_every_k(ppca, k):
    x = ppca.sample(40)
    estimate = importance_log_likelihood(ppca.model, ppca.exact_guide, x, k=k, batch_size=16, k_chunk=3)
    assert torch.allclose(estimate.log_likelihood, ppca.log_marginal(x), atol=1e-4, rtol=0)
    # Every weight is the same, so the effective sample size is K.
    assert torch.allclose(estimate.ess, torch.full_like(estimate.ess, float(k)), rtol=1e-6)
    assert estimate.k == k and estimate.seconds > 0


def test_poor_guide_elbo_below_truth_and_estimate_climbs_to_it(ppca):
    x = ppca.sample(200)
    truth = ppca.log_marginal(x).mean().item()
    elbo = torch.stack([elbo_terms(ppca.model, ppca.poor_guide, x, analytic_kl=True).elbo
                        for _ in range(50)]).mean().item()
    means = {k: importance_log_likelihood(ppca.model, ppca.poor_guide, x, k=k, batch_size=50).mean
             for k in (1, 10, 100, 5000)}
    assert elbo < truth - 0.05, "the poor guide must leave a visible gap"
    assert means[1] < means[10] < means[100] <= means[5000] + 1e-3
    final = importance_log_likelihood(ppca.model, ppca.poor_guide, x, k=5000, batch_size=50)
    assert abs(final.mean - truth) < 3 * final.stderr
    assert abs(final.mean - truth) < 0.02


def test_one_dimensional_latent_matches_quadrature():
    line = BernoulliLine(data_dim=6)
    g = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.full((12, 6), 0.5, dtype=torch.float64), generator=g)
    exact = line.log_marginal_quadrature(x)
    estimate = importance_log_likelihood(line.model, line.guide, x, k=20000, batch_size=12)
    assert torch.allclose(estimate.log_likelihood, exact, atol=0.03, rtol=0)
    # And the K=1 estimate is clearly looser: the test can tell a bad estimator.
    crude = importance_log_likelihood(line.model, line.guide, x, k=1, batch_size=12)
    assert (crude.log_likelihood - exact).abs().mean() > 0.1


def test_bound_grows_with_k_on_average_and_k1_is_the_elbo(ppca):
    x = ppca.sample(20)
    repeats = 300
    averages = {}
    for k in (1, 10, 100):
        runs = torch.stack([importance_log_likelihood(ppca.model, ppca.poor_guide, x, k=k).log_likelihood.mean()
                            for _ in range(repeats if k < 100 else 30)])
        averages[k] = (runs.mean().item(), runs.std().item() / math.sqrt(len(runs)))
    assert averages[1][0] + 3 * averages[1][1] < averages[10][0]
    assert averages[10][0] < averages[100][0] + 3 * averages[100][1]
    # K = 1 is the one-sample ELBO estimator, so its average is the ELBO (analytic KL, many draws).
    elbo = torch.stack([elbo_terms(ppca.model, ppca.poor_guide, x, analytic_kl=True).elbo.mean()
                        for _ in range(2000)])
    assert abs(averages[1][0] - elbo.mean().item()) < 4 * math.hypot(averages[1][1], elbo.std().item() / math.sqrt(2000))


def test_chunk_merging_is_exact():
    log_w = torch.randn(37, 9, dtype=torch.float64) * 5
    whole = LogMeanExp()
    whole.update(log_w)
    for sizes in ([1] * 37, [10, 10, 10, 7], [36, 1]):
        parts = LogMeanExp()
        for chunk in torch.split(log_w, sizes):
            parts.update(chunk)
        assert torch.allclose(parts.log_mean, whole.log_mean, atol=1e-12)
        assert torch.allclose(parts.ess, whole.ess, atol=1e-9)
    assert torch.allclose(whole.log_mean, torch.logsumexp(log_w, 0) - math.log(37))
    w = torch.exp(log_w - log_w.max(0).values)
    assert torch.allclose(whole.ess, w.sum(0) ** 2 / (w ** 2).sum(0))


def _importance_plate_size() -> int:
    from pyro.poutine.runtime import _PYRO_STACK

    return next(m.size for m in _PYRO_STACK if getattr(m, "name", None) == "importance_samples")


def test_chunked_and_unchunked_evaluation_agree_for_the_same_draws(ppca):
    """The guide's draws come from a fixed noise tensor indexed by (sample, example), so
    chunking over K and over examples sees exactly the same draws as one big chunk."""
    n, k = 30, 64
    x = ppca.sample(n)
    noise = torch.randn(k, n, 2, dtype=torch.float64)

    def make_guide():
        used = {"k": 0}

        def guide(x_chunk, rows):
            mean, cov = ppca.posterior(x_chunk)
            proposal = pyro.distributions.Normal(0.5 * mean, 1.2 * cov.diagonal().sqrt()).to_event(1)
            k_here = _importance_plate_size()
            eps = noise[used["k"]:used["k"] + k_here][:, rows]
            used["k"] = (used["k"] + k_here) % k
            z = proposal.base_dist.loc + proposal.base_dist.scale * eps
            with pyro.plate("data", x_chunk.shape[0]):
                pyro.sample("z", pyro.distributions.Delta(z, log_density=proposal.log_prob(z), event_dim=1))

        return guide

    def model(x_chunk, rows):
        ppca.model(x_chunk)

    rows = torch.arange(n)
    whole = importance_log_likelihood(model, make_guide(), x, k=k, batch_size=n, k_chunk=k, rows=rows)
    for batch_size, k_chunk in ((7, 16), (30, 5), (1, 64)):
        chunked = importance_log_likelihood(model, make_guide(), x, k=k, batch_size=batch_size,
                                            k_chunk=k_chunk, rows=rows)
        assert torch.allclose(whole.log_likelihood, chunked.log_likelihood, atol=1e-10)
        assert torch.allclose(whole.ess, chunked.ess, atol=1e-8)
    # The draws matter: a different noise tensor gives different numbers.
    noise.normal_()
    other = importance_log_likelihood(model, make_guide(), x, k=k, batch_size=n, rows=rows)
    assert not torch.allclose(whole.log_likelihood, other.log_likelihood, atol=1e-3)


def test_iwae_loss_matches_renyi_elbo_alpha_zero_in_expectation(ppca):
    x = ppca.sample(10)
    k, repeats = 8, 400
    ours = torch.tensor([IWAELoss(k=k).loss(ppca.model, ppca.poor_guide, x) for _ in range(repeats)])
    renyi = RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    theirs = torch.tensor([renyi.loss(ppca.model, ppca.poor_guide, x) for _ in range(repeats)])
    estimator = torch.tensor([-importance_log_likelihood(ppca.model, ppca.poor_guide, x, k=k).log_likelihood.sum()
                              for _ in range(repeats)])
    se = math.hypot(ours.std(), theirs.std()) / math.sqrt(repeats)
    assert abs(ours.mean() - theirs.mean()) < 4 * se
    assert abs(estimator.mean() - theirs.mean()) < 4 * se


def test_log_weights_are_per_example(ppca):
    x = ppca.sample(6)
    log_w = log_importance_weights(ppca.model, ppca.exact_guide, x, k=5)
    assert log_w.shape == (5, 6)
    assert torch.allclose(log_w, ppca.log_marginal(x).expand(5, 6), atol=1e-6)


@pytest.mark.parametrize("k,x,message", [
    (0, torch.zeros(2, 1, 28, 28), "must be a whole number of at least 1"),
    (5, torch.full((2, 1, 28, 28), 0.5), r"binarize them \(pyro_vae\.binarize\(x\)"),  # Python advice, no flags
    (5, torch.zeros(2, 1, 14, 14), r"model expects \(1, 28, 28\)"),
    (5, torch.full((2, 1, 28, 28), float("nan")), "NaN"),
    (5, torch.zeros(0, 1, 28, 28), "empty"),
    (5, torch.zeros(2, 1, 28, 28, dtype=torch.long), "float tensor"),
    # was torch's "mat1 and mat2 must have the same dtype" from inside the encoder
    (5, torch.zeros(2, 1, 28, 28, dtype=torch.float64), r"the examples are torch.float64 but the model's "
                                                        r"parameters are torch.float32; pass x.to\(torch.float32\)"),
])
def test_bad_input_to_the_estimator_gets_a_sentence(k, x, message):
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.errors import PyroVAEError

    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    with pytest.raises(PyroVAEError, match=message):
        importance_log_likelihood(model, guide, x, k=k)


@pytest.mark.parametrize("other,message", [
    ((ModelConfig(latent_dim=3, hidden_dims=[8]), (1, 28, 28)),
     "the guide's code has 3 dimensions but the model's latent has 2"),
    ((ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 32, 32)), "it was built for images of another shape"),
])
def test_a_guide_that_is_not_the_models_pair_gets_a_sentence(other, message):
    """A guide of another latent size or image shape failed with torch's "mat1 and mat2 shapes
    cannot be multiplied", in the estimator and in fit (a new-user audit)."""
    from pyro_vae.build import build_vae
    from pyro_vae.errors import PyroVAEError
    from pyro_vae.fit import fit

    model, _ = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    _, guide = build_vae(*other)
    x = torch.zeros(4, 1, 28, 28)
    with pytest.raises(PyroVAEError, match=message):
        importance_log_likelihood(model, guide, x, k=3)
    with pytest.raises(PyroVAEError, match=message):
        fit(model, guide, (x, x), epochs=1, log=lambda line: None)


def test_the_guides_pairing_is_probed_only_when_the_programs_fail():
    """Encoding one example on every call to check the guide's pairing (above) was a fifth of a
    small call's cost (K=4, two images; issue #16): the estimator probes only after a failure."""
    from pyro_vae.build import build_vae

    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))

    def refuse(x):
        raise AssertionError("the guide was probed on a call that succeeded")

    guide.encode = refuse
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
    assert importance_log_likelihood(model, guide, x, k=4).log_likelihood.shape == (3,)


@pytest.mark.parametrize("options,message", [
    # range()'s "arg 3 must not be zero"
    ({"batch_size": 0}, "batch_size must be a whole number of at least 1, or None"),
    ({"k_chunk": 0}, "k_chunk must be a whole number of at least 1, or None"),
    ({"k_chunk": 2.5}, "k_chunk must be a whole number of at least 1, or None .*not 2.5"),  # a TypeError in range()
    # Pyro's "Shape mismatch inside plate('importance_samples')", torch's "Expected dim < 0 to index from the right"
    # and "list indices must be integers or slices, not float"
    ({"max_plate_nesting": 0}, r"max_plate_nesting must be a whole number of at least 1 \(the data plate .*not 0\."),
    ({"max_plate_nesting": -1}, "max_plate_nesting must be a whole number of at least 1 .*not -1"),
    ({"max_plate_nesting": 1.5}, "max_plate_nesting must be a whole number of at least 1 .*not 1.5"),
])
def test_chunk_sizes_of_the_estimator_are_checked(options, message):
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.errors import ConfigError

    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 28, 28))
    with pytest.raises(ConfigError, match=message):
        importance_log_likelihood(model, guide, torch.zeros(2, 1, 28, 28), k=5, **options)


MEMORY_PROBE = """
import resource, sys, torch
from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.inference.loglik import importance_log_likelihood
torch.set_num_threads(1)
network = sys.argv[1]
# the conv network has one dense layer between its convolutions and the code (build_vae refuses a second size)
model, guide = build_vae(ModelConfig(network=network, latent_dim=50, hidden_dims=[500, 500] if network == "mlp"
                                     else [500]), (1, 28, 28))
x = torch.bernoulli(torch.full((12, 1, 28, 28), 0.3))
estimate = importance_log_likelihood(model, guide, x, k=5000)
assert torch.isfinite(estimate.log_likelihood).all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_peak_memory_at_k_5000_stays_under_2_gib(network):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, network], capture_output=True, text=True, env=env,
                         check=True)
    peak = int(out.stdout.strip().splitlines()[-1])
    assert peak < 2 * 2**30, f"peak resident memory {peak / 2**30:.2f} GiB"


def test_a_chunk_of_examples_leaves_no_tensor_behind(ppca):
    """The estimator writes each chunk of examples' results into two [N] tensors allocated
    once, so the count of live tensors is the same after every chunk. A small tensor kept per
    chunk (a list of results) outlives the chunks' large tensors and, on the CPU, is carved
    from the heap holes they reuse: ``evaluate --k 20000 --limit 1000`` then grew by about
    1 MiB an image in some runs and not in others (issue #16, tenth pass)."""
    import gc

    x = ppca.sample(6)
    live = []

    def count_tensors(done, total):
        gc.collect()  # Pyro's messages hold cycles: count what is reachable, not what awaits the collector
        live.append(sum(issubclass(type(item), torch.Tensor) for item in gc.get_objects()))  # type(): no proxy's __class__

    estimate = importance_log_likelihood(ppca.model, ppca.exact_guide, x, k=10, batch_size=1, k_chunk=4,
                                         progress=count_tensors)
    assert len(live) == 6 and len(set(live)) == 1, live  # a list of results: one or two more each chunk
    assert torch.allclose(estimate.log_likelihood, ppca.log_marginal(x), atol=1e-4, rtol=0)
    assert torch.allclose(estimate.ess, torch.full_like(estimate.ess, 10.0), rtol=1e-5)


def test_cpu_chunks_keep_the_decoder_output_under_the_mmap_threshold():
    """On the CPU a chunk's decoder output stays under the 4 MiB mmap threshold the CLI fixes
    (so its memory comes back from the heap, not from fresh page-faulted mmaps): 1,336 rows
    of 784 float32 pixels, 5 for a 256-way categorical; other devices keep 10,000 rows.
    The default chunking gives the estimate of explicit chunks of that size on the same draws."""
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.inference.loglik import chunk_budget
    from pyro_vae.memory import MMAP_THRESHOLD_BYTES

    images = torch.zeros(3, 1, 28, 28)
    assert chunk_budget(images) == (4 * 2**20 - 4096) // (784 * 4) == 1336
    assert chunk_budget(images, 256) == 5  # min(10,000 // 256, 4,190,208 // (256 * 3136))
    assert chunk_budget(images.double()) == 668
    assert chunk_budget(torch.zeros(3, 1, 28, 28, device="meta")) == 10_000
    assert chunk_budget(torch.zeros(3, 1, 28, 28, device="meta"), 256) == 39

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(network="mlp", latent_dim=4, hidden_dims=[16]), (1, 28, 28))
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.3))
    rows = []
    hook = model.decoder.register_forward_hook(lambda module, args, out: rows.append(out[..., 0, 0, 0].numel()))
    pyro.set_rng_seed(1)
    default = importance_log_likelihood(model, guide, x, k=3000).log_likelihood
    hook.remove()
    assert rows == [1336, 1336, 328] * 3  # K = 3000 split per example; 1336 x 3136 bytes < 4 MiB
    assert 1336 * 784 * 4 < MMAP_THRESHOLD_BYTES
    pyro.set_rng_seed(1)
    explicit = importance_log_likelihood(model, guide, x, k=3000, batch_size=1, k_chunk=1336).log_likelihood
    assert torch.equal(default, explicit)


@pytest.mark.parametrize("observed,x,kind", [
    ("bernoulli", torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), "probability mass on binary data"),
    ("normal", torch.tensor([[0.2, -1.0, 3.0], [1.5, 0.0, 0.7]]), "density (not comparable)"),
    ("bernoulli-and-normal", torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), None),
])
def test_a_researchers_own_program_gets_the_kind_its_observed_sites_tell(observed, x, kind):
    """A function-style model (no pyro-vae likelihood) was reported as 'not known' even for a Bernoulli."""
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(1))
            if observed.startswith("bernoulli"):
                pyro.sample("x", dist.Bernoulli(logits=z.expand(z.shape[:-1] + x.shape[-1:])).to_event(1), obs=x)
            if observed.endswith("normal"):
                pyro.sample("y", dist.Normal(z.expand(z.shape[:-1] + x.shape[-1:]), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(1))

    estimate = importance_log_likelihood(model, guide, x, k=3)
    assert estimate.kind == kind and estimate.quantity == "log p(x)"
    assert estimate.summary()["kind"] == (kind or "not known (the model has no pyro-vae likelihood)")


def test_a_program_without_a_data_plate_is_refused_not_scored_as_one_example():
    """A function-style model and guide that sample the batch as one event (``.to_event(2)``, no
    pyro.plate) gave one "log p(x)" for a batch of 10 examples: the joint density of the batch,
    reported as one example's, in nats per example. Now refused with a sentence naming the plate;
    the same programs with the plate are scored one value per example."""
    import pyro.distributions as dist
    from pyro_vae.errors import DataError

    def programs(plate: bool):
        def model(x):
            with pyro.plate("data", x.shape[0]) if plate else contextlib.nullcontext():
                z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(1 if plate else 2))
                pyro.sample("x", dist.Normal(z.expand(z.shape[:-1] + x.shape[-1:]), 1.0).to_event(1 if plate else 2),
                            obs=x)

        def guide(x):
            with pyro.plate("data", x.shape[0]) if plate else contextlib.nullcontext():
                pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(1 if plate else 2))
        return model, guide

    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match=r"give 1 value\(s\) for a batch of 10 examples, not one per example: .*"
                                        r"pyro\.plate\(\"data\", x\.shape\[0\]\)"):
        importance_log_likelihood(*programs(plate=False), x, k=3)
    with pytest.raises(DataError, match="a batch of 4 examples, not one per example"):  # in chunks of examples
        importance_log_likelihood(*programs(plate=False), x, k=3, batch_size=4)
    assert importance_log_likelihood(*programs(plate=True), x, k=3).log_likelihood.shape == (10,)
    assert importance_log_likelihood(*programs(plate=False), x[:1], k=3).log_likelihood.shape == (1,)  # one: alike


def test_a_conditional_models_labels_are_checked_at_the_boundary():
    """A CVAE's estimate with 3 labels for 8 images, a label of 10 among 4 classes, or no labels
    failed deep in torch (broadcasting, one_hot, a missing positional argument)."""
    from pyro_vae.build import build_vae
    from pyro_vae.errors import PyroVAEError

    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[8]), (1, 28, 28), num_classes=4)
    x = torch.zeros(8, 1, 28, 28)
    for inputs, message in (({"y": torch.zeros(3, dtype=torch.long)}, "y has 3 entries for 8 examples"),
                            ({"y": torch.full((8,), 10)}, r"y has labels outside 0\.\.3"),
                            ({}, "pass y=labels")):
        with pytest.raises(PyroVAEError, match=message):
            importance_log_likelihood(model, guide, x, k=2, **inputs)
    estimate = importance_log_likelihood(model, guide, x, k=2, y=torch.arange(8) % 4)
    assert torch.isfinite(estimate.log_likelihood).all()


def _batch_normed_vae_and_images():
    """A conv VAE with batch normalisation whose running statistics have moved from their initial
    0 and 1 (as after training), six images, and a check that it is in a mode with its statistics kept."""
    from pyro_vae.build import build_vae

    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(network="conv", batch_norm=True, latent_dim=4, hidden_dims=[32],
                                         conv_channels=[8, 16]), (1, 28, 28))
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3))
    with torch.no_grad():
        for program in (model, guide):
            program(torch.bernoulli(torch.full((32, 1, 28, 28), 0.6)))
    states = [{name: value.clone() for name, value in program.state_dict().items()} for program in (model, guide)]

    def left_as_it_was(training: bool) -> None:
        assert all(module.training == training for module in [*model.modules(), *guide.modules()])
        for program, state in zip((model, guide), states):
            assert all(torch.equal(value, state[name]) for name, value in program.state_dict().items())

    return model, guide, x, left_as_it_was


def test_a_model_in_training_mode_is_scored_as_in_evaluation_mode_and_left_as_it_was():
    """Called on a batch-normalised model still in training mode (as a training loop leaves it), the
    estimator normalised each chunk by its own statistics: an image's log p(x) moved by tens of nats
    with batch_size, and the call moved the running statistics towards the images it scored."""
    model, guide, x, left_as_it_was = _batch_normed_vae_and_images()
    estimates = {}
    for mode, batch_size in (("train", 1), ("train", 6), ("eval", 1)):
        model.train(mode == "train"), guide.train(mode == "train")
        pyro.set_rng_seed(1)
        estimates[mode, batch_size] = importance_log_likelihood(model, guide, x, k=20, batch_size=batch_size)
        left_as_it_was(mode == "train")
    assert torch.equal(estimates["train", 1].log_likelihood, estimates["eval", 1].log_likelihood)
    assert torch.allclose(estimates["train", 6].log_likelihood, estimates["eval", 1].log_likelihood, atol=3.0)


def test_the_elbo_of_a_model_in_training_mode_is_that_of_evaluation_mode_and_leaves_it_as_it_was():
    """evaluate_elbo from Python on a batch-normalised model in training mode normalised each batch
    by its own statistics (the mean ELBO moved with batch_size) and moved the running statistics."""
    from pyro_vae.inference.train import evaluate_elbo

    model, guide, x, left_as_it_was = _batch_normed_vae_and_images()
    kls = {}
    for mode, batch_size in (("train", 2), ("train", 6), ("eval", 6)):
        model.train(mode == "train"), guide.train(mode == "train")
        kls[mode, batch_size] = evaluate_elbo(model, guide, x, batch_size=batch_size, analytic_kl=True)["kl"]
        left_as_it_was(mode == "train")
    # the KL term is deterministic given x: equal to the digit in every mode and batch size
    assert kls["train", 2] == pytest.approx(kls["eval", 6], rel=1e-6)
    assert kls["train", 6] == pytest.approx(kls["eval", 6], rel=1e-6)


@pytest.mark.parametrize("guide_site,message", [
    ("latent", "the model samples the latent 'z' but the guide does not"),
    (None, "the guide samples 'extra' but the model has no site of that name"),
])
def test_a_guide_whose_latents_are_not_the_models_gets_a_sentence(guide_site, message):
    """A researcher's guide naming its site 'latent' where the model's is 'z' gave a number: z was
    drawn from the prior and log p(z) - log q(latent) entered every weight, an estimate of nothing;
    a guide site the model lacks added -log q without a log p."""
    import pyro.distributions as dist

    from pyro_vae.errors import DataError

    ppca = PPCA(latent_dim=2, data_dim=3, sigma=0.5)
    x = ppca.sample(4)

    def guide(x):
        if guide_site is None:  # the model's z, and a site of the guide's own
            ppca.exact_guide(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample(guide_site or "extra", dist.Normal(torch.zeros(x.shape[0], 2, dtype=x.dtype), 1.0).to_event(1))

    with pytest.raises(DataError, match=message):
        importance_log_likelihood(ppca.model, guide, x, k=10)
    with pytest.raises(DataError, match=message):
        IWAELoss(k=3).loss(ppca.model, guide, x)
    assert torch.allclose(importance_log_likelihood(ppca.model, ppca.exact_guide, x, k=1).log_likelihood,
                          ppca.log_marginal(x).to(x.dtype), atol=1e-6)  # the model's pair: exact at any K


def test_plates_nested_inside_the_data_plate_are_summed_per_example_with_max_plate_nesting_2():
    """max_plate_nesting=2, which the estimator accepts for "the data plate and the plates nested
    inside it", failed for every model: the nested plates were taken to lie right of the data plate
    (dim -1), so the data dimension was summed out and a library VAE was told it gives "1 value(s)
    for a batch of 3 examples ... sample every site inside pyro.plate". A model with a plate nested
    in the data plate now gets the numbers of the same model written with .to_event, and a plain
    VAE the same numbers at any max_plate_nesting."""
    import pyro.distributions as dist
    from torch import nn

    from pyro_vae.build import build_vae

    encoder, weight = nn.Linear(4, 2), torch.tensor([1.5, -1.0, 0.5, 2.0])

    def guide(x):
        loc, raw = encoder(x).unbind(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 0.1))

    def nested(x):
        with pyro.plate("data", x.shape[0]):  # dim -1
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0]), 1.0))
            with pyro.plate("pixels", 4):  # dim -2: x as [D, B]
                pyro.sample("x", dist.Normal(weight[:, None] * z, 0.5), obs=x.T)

    def event(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0]), 1.0))
            pyro.sample("x", dist.Normal(z[..., None] * weight, 0.5).to_event(1), obs=x)

    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    estimates = []
    for model, nesting in ((nested, 2), (event, 1)):
        pyro.set_rng_seed(0)
        estimates.append(importance_log_likelihood(model, guide, x, k=7, max_plate_nesting=nesting).log_likelihood)
    assert estimates[0].shape == (3,) and torch.allclose(estimates[0], estimates[1], atol=1e-5)
    vae, vae_guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), (1, 4, 4))
    images = torch.bernoulli(torch.full((3, 1, 4, 4), 0.4), generator=torch.Generator().manual_seed(1))
    numbers = []
    for nesting in (1, 2, 3):
        pyro.set_rng_seed(0)
        numbers.append(importance_log_likelihood(vae, vae_guide, images, k=5, max_plate_nesting=nesting).log_likelihood)
    assert all(torch.equal(numbers[0], other) for other in numbers[1:])
