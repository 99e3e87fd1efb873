"""Small contracts that mutation testing found unchecked (docs/testing.md lists the
mutants): each test states what the code promises, on tiny inputs, in well under a second.

- unbinarized data keep their grey levels;
- Pyro's own ELBOs draw as many particles as asked, and "analytic-kl" (fast or Pyro's)
  uses the closed-form KL;
- each rank's ``shard_rows`` is the slice ``shard`` takes, and the global-batch noise is
  drawn in the latent's own precision;
- a site's log-density is summed over plates nested inside the data plate;
- a likelihood's support error ends with the caller's hint when one is given;
- a checkpoint carries the SHA-256 of its archive, so a flipped byte is named as such;
- "no space left" is said only when the disk really has under 1 MiB free.
"""

from __future__ import annotations

import hashlib
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyro_vae.data.datasets import as_tensor, load_dataset
from pyro_vae.errors import CheckpointError, DataError
from pyro_vae.inference import checkpoint as ckpt
from pyro_vae.inference.distributed import DistributedContext, GlobalBatchNoise
from pyro_vae.inference.objectives import make_objective
from pyro_vae.inference.weights import per_example_log_prob
from pyro_vae.likelihoods import make_likelihood


def test_without_binarization_the_grey_levels_are_kept(idx_dir):
    grey = load_dataset("idx", str(idx_dir), "none").test.images
    cut = load_dataset("idx", str(idx_dir), "threshold").test.images
    grey, cut = as_tensor(grey), as_tensor(cut)
    assert ((grey > 0) & (grey < 1)).any()  # grey pixels survive ...
    assert torch.equal(cut, (grey > 0.5).float())  # ... and are the very images thresholding cuts


def unit_normal_model_and_guide(shapes: list):
    """p(z) = N(0, 1), p(x | z) = N(z, 1) per example, and the guide q(z | x) = p(z), which
    appends the shape of each z it draws to ``shapes``."""
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            shapes.append(tuple(pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0)).shape))

    return model, guide


@pytest.mark.parametrize("name", ["elbo", "analytic-kl"])
def test_pyros_elbos_draw_the_number_of_particles_asked_for(name):
    shapes = []
    model, guide = unit_normal_model_and_guide(shapes)
    objective = make_objective(name, num_particles=4, implementation="pyro")
    loss = objective.loss(model, guide, torch.zeros(3))
    assert shapes == [(4, 3)]
    if name == "analytic-kl":  # q = p, so the loss is -log N(0; z, 1) averaged: 0.5 (log 2 pi + 1) per point
        assert loss == pytest.approx(3 * 0.5 * (math.log(2 * math.pi) + 1), abs=3.0)


@pytest.mark.parametrize("world_size,n", [(2, 7), (3, 16)])
def test_each_ranks_shard_rows_is_the_slice_shard_takes(world_size, n):
    rows = torch.randperm(n)
    for rank in range(world_size):
        ctx = DistributedContext(rank, world_size)
        assert torch.equal(rows[ctx.shard_rows(n)], ctx.shard(rows))


def test_global_batch_noise_is_drawn_in_the_latents_precision():
    """Rows 2..3 of a global batch of 4 in float64: the draw is rows 2..3 of one float64
    ``randn`` of the whole batch (loc 0, scale 1), not a float32 draw widened."""
    def guide():
        with pyro.plate("data", 2):
            pyro.sample("z", dist.Normal(torch.zeros(2, 3, dtype=torch.float64), 1.0).to_event(1))

    with GlobalBatchNoise(torch.Generator().manual_seed(5), slice(2, 4), global_size=4):
        z = poutine.trace(guide).get_trace().nodes["z"]["value"]
    want = torch.randn((4, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)[2:4]
    assert z.dtype == torch.float64 and torch.equal(z, want)


def test_per_example_log_prob_sums_plates_inside_the_data_plate_and_broadcasts_global_sites():
    # [K, pixels, B]: the data plate at dim -1 (Pyro's outermost), a plate nested in it at dim -2
    normal = torch.distributions.Normal(torch.zeros(2, 3, 5), 1.0)
    got = per_example_log_prob({"fn": normal, "value": torch.zeros(2, 3, 5)}, max_plate_nesting=2)
    assert got.shape == (2, 5) and torch.allclose(got, torch.full((2, 5), -1.5 * math.log(2 * math.pi)))
    scalar = torch.distributions.Normal(torch.tensor(0.0), 1.0)  # a site outside every plate
    got = per_example_log_prob({"fn": scalar, "value": torch.tensor(0.0)}, max_plate_nesting=1)
    assert got.shape == (1, 1) and got.item() == pytest.approx(-0.5 * math.log(2 * math.pi))


@pytest.mark.parametrize("name,bad", [("bernoulli", 0.5), ("continuous-bernoulli", 2.0)])
def test_a_support_error_ends_with_the_callers_hint(name, bad):
    likelihood = make_likelihood(name, (1, 2, 2))
    with pytest.raises(DataError, match=r"the test split .* use --flag-x\.$"):
        likelihood.check_support(torch.full((1, 1, 2, 2), bad), "the test split", hint="use --flag-x")
    with pytest.raises(DataError, match="nan|NaN"):
        likelihood.check_support(torch.full((1, 1, 2, 2), float("nan")), "the test split", hint="use --flag-x")


def test_a_checkpoint_carries_its_sha256_and_a_flipped_byte_is_named_as_such(tmp_path):
    raw = ckpt.checkpoint_bytes({"w": torch.arange(64.0)})
    size = len(ckpt.DIGEST_PREFIX) + 64  # the zip comment: prefix and hex digest, after its 2-byte length
    assert raw[-size - 2:-size] == size.to_bytes(2, "little")
    assert raw[-size:] == ckpt.DIGEST_PREFIX + hashlib.sha256(raw[:-size - 2]).hexdigest().encode()
    path = tmp_path / "c.pt"
    middle = len(raw) // 2
    path.write_bytes(raw[:middle] + bytes([raw[middle] ^ 1]) + raw[middle + 1:])
    with pytest.raises(CheckpointError, match="SHA-256"):
        ckpt.load_checkpoint(path)


@pytest.mark.parametrize("free,full", [(2**20 - 1, True), (2**20 + 2**21, False)])
def test_no_space_is_said_only_under_one_mib_free(tmp_path, monkeypatch, free, full):
    """torch.save's RuntimeError says nothing of why: the disk's free space decides."""
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda path: type("Usage", (), {"free": free})())
    message = ckpt.write_failure_message(tmp_path / "c.pt", RuntimeError("write failed"), existed=True)
    assert message.startswith("no space left") == full, message
    assert message.endswith("(the previous c.pt is intact).")
    # otherwise the error's own first line is the reason given
    assert full or message.startswith(f"could not write {tmp_path / 'c.pt'} (write failed); "), message


@pytest.mark.parametrize("implementation", ["fast", "pyro"])
def test_the_analytic_kl_objective_uses_the_closed_form_kl(implementation):
    """A model whose likelihood ignores z: with the closed-form KL the loss has no Monte
    Carlo noise at all, -log N(x; 0, 1) + KL(N(0.5, 1) || N(0, 1)) = 0.5 log 2 pi + x^2/2 + 0.125."""
    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
            pyro.sample("x", dist.Normal(torch.zeros(x.shape[0]), 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.full((x.shape[0],), 0.5), 1.0))

    x = torch.tensor([0.0, 1.0])
    objective = make_objective("analytic-kl", implementation=implementation)
    losses = []
    for seed in range(3):
        pyro.set_rng_seed(seed)
        losses.append(float(objective.loss(model, guide, x)))
    want = 2 * (0.5 * math.log(2 * math.pi) + 0.125) + 0.5
    assert losses == pytest.approx([want] * 3, abs=1e-5)


def test_evaluate_elbo_reports_the_mean_and_its_standard_error_over_the_examples():
    """Against the per-example ELBOs of ``elbo_terms`` on the same draws: the mean, and the
    standard error sqrt(s^2 / n) with the unbiased sample variance s^2."""
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.inference.objectives import elbo_terms
    from pyro_vae.inference.train import evaluate_elbo

    torch.manual_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), image_shape=(1, 4, 4))
    x = torch.bernoulli(torch.full((37, 1, 4, 4), 0.3))
    torch.manual_seed(1)
    per_example = elbo_terms(model, guide, x, analytic_kl=True).elbo.double()
    torch.manual_seed(1)
    result = evaluate_elbo(model, guide, x, batch_size=len(x), analytic_kl=True)
    assert result["elbo"] == pytest.approx(per_example.mean().item(), rel=1e-9)
    assert per_example.std().item() > 0.1  # the examples differ, so a wrong formula shows
    assert result["elbo_stderr"] == pytest.approx(per_example.std().item() / math.sqrt(len(x)), rel=1e-6)


def test_the_iwae_objectives_use_the_k_asked_for_and_five_by_default():
    """K enters the bound through log (1/K) sum_k w_k; every other test fixes K, so the
    default (5, as the CLI documents) and its passing through are checked here."""
    from pyro_vae.inference.objectives import DReGIWAELoss, IWAELoss

    assert IWAELoss().k == 5 and make_objective("iwae").k == 5 and make_objective("iwae-dreg").k == 5
    assert make_objective("iwae", k=7).k == 7 and make_objective("iwae-dreg", k=7).k == 7
    assert isinstance(make_objective("iwae-dreg"), DReGIWAELoss) and DReGIWAELoss().k == 5


def test_scaled_importance_weights_scale_the_guides_term_like_the_priors():
    """With a KL weight beta on z (scale_sites on model and guide), the scaled log-weight of
    each draw is log p(x | z) + beta (log p(z) - log q(z | x)), by hand from the draws."""
    from pyro_vae.inference.objectives import scale_sites
    from pyro_vae.inference.weights import log_importance_weights

    x, draws = torch.tensor([0.5, -1.0, 2.0]), []

    def model(x):
        with pyro.plate("data", 3):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", 3):
            draws.append(pyro.sample("z", dist.Normal(0.3 * x, 0.7)))

    beta = 0.25
    torch.manual_seed(0)
    log_w = log_importance_weights(scale_sites(model, ["z"], beta), scale_sites(guide, ["z"], beta), x, k=4,
                                   max_plate_nesting=1, scaled=True)
    z = draws[-1]  # [4, 3]
    normal = torch.distributions.Normal
    want = (normal(z, 1.0).log_prob(x)
            + beta * (normal(0.0, 1.0).log_prob(z) - normal(0.3 * x, 0.7).log_prob(z)))
    assert log_w.shape == (4, 3) and torch.allclose(log_w, want, atol=1e-5)



def test_a_classifier_reads_extra_inputs_beside_the_pixels_broadcasting_their_leading_dims():
    # the ADGM's q(y | a, x): the pixels and a [..., E] (any float dtype) feed one MLP
    from pyro_vae.nn import classifier

    torch.manual_seed(0)
    net = classifier((1, 2, 2), [3], 4, extra_inputs=2)
    x, extra = torch.rand(3, 1, 2, 2), torch.rand(5, 1, 2, dtype=torch.float64)
    logits = net(x, extra)
    assert logits.shape == (5, 3, 4) and logits.dtype == torch.float32
    by_hand = net.body(torch.cat([x.flatten(-3).expand(5, 3, 4), extra.float().expand(5, 3, 2)], -1))
    assert torch.allclose(logits, by_hand)


def test_the_best_checkpoint_keeps_the_runs_extra_entries_and_none_of_the_last_epochs_state():
    from pyro_vae.inference.train import best_checkpoint

    history = [{"epoch": 1, "step": 10}, {"epoch": 2, "step": 20}, {"epoch": 3, "step": 30}]
    last = {"format": 3, "model": "last model", "guide": "last guide", "optimizer": "adam", "epoch": 3, "step": 30,
            "best_valid_elbo": -5.0, "history": history, "rng": "rng", "rng_ranks": [], "world_size": 1,
            "position": 7, "best": {"epoch": 2, "model": "best model", "guide": "best guide"},
            "config": "the run's config", "image_shape": [1, 2, 2]}
    assert best_checkpoint(last) == {
        "format": 3, "model": "best model", "guide": "best guide", "epoch": 2, "step": 20, "best_valid_elbo": -5.0,
        "history": history[:2], "config": "the run's config", "image_shape": [1, 2, 2]}


def test_a_checkpoint_is_written_through_a_hidden_tmp_file_that_a_killed_runs_cleanup_finds(tmp_path):
    seen = []
    ckpt.atomic_write_bytes(tmp_path / "c.pt", lambda handle: seen.extend(p.name for p in tmp_path.iterdir()))
    assert len(seen) == 1 and seen[0].startswith(".c.pt.") and seen[0].endswith(".tmp")
    assert [p.name for p in tmp_path.glob(".*.tmp*")] == [] and (tmp_path / "c.pt").exists()


def test_without_the_environment_variable_judges_are_cached_in_the_users_cache(monkeypatch, tmp_path):
    from pyro_vae.data import sources
    from pyro_vae.inference.judge import CACHE_ENV, default_cache_dir

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setattr(sources, "cache_dir", lambda: tmp_path / "pyro-vae")
    assert default_cache_dir() == tmp_path / "pyro-vae" / "classifiers"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_scale_sites_multiplies_the_scale_a_site_already_has():
    from pyro_vae.inference.objectives import scale_sites

    def program():
        with poutine.scale(scale=3.0):
            pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(0.0, 1.0))

    trace = poutine.trace(scale_sites(program, ["z"], 0.5)).get_trace()
    assert (trace.nodes["z"]["scale"], trace.nodes["x"]["scale"]) == (1.5, 3.0)


def test_describe_gives_bits_per_dim_and_its_standard_error():
    from pyro_vae.inference import kinds

    fields = kinds.describe(-100.0, 2.0, (1, 2, 5), kinds.EIGHT_BIT_MASS, "categorical-256", "none")
    assert fields == {"likelihood": "categorical-256", "binarize": "none", "kind": kinds.EIGHT_BIT_MASS,
                      "dimensions": 10, "bits_per_dim": pytest.approx(100.0 / (10 * math.log(2))),
                      "bits_per_dim_stderr": pytest.approx(2.0 / (10 * math.log(2)))}


def test_a_code_scaler_survives_its_dict_form():
    from pyro_vae.inference.codes import CodeScaler

    means = torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 0.0, 2.0, 0.5])
    scaler = CodeScaler.fit(means)
    again = CodeScaler.from_dict(scaler.to_dict())
    assert torch.equal(again.active, torch.tensor([True, False, True, True]))
    assert torch.equal(again(means), scaler(means)) and torch.equal(again.invert(scaler(means)), scaler.invert(scaler(means)))
    # invert undoes the standardisation on the active units and leaves the others at their training mean (here 0)
    back = scaler.invert(scaler(means))
    assert torch.allclose(back[:, scaler.active], means[:, scaler.active], atol=1e-5) and (back[:, 1] == 0).all()


def test_a_code_scaler_inverts_an_inactive_unit_to_its_training_mean():
    """CodeScaler.invert said it put M1's inactive units "at their training mean" but set them to 0:
    a unit whose posterior mean sits at 0.8 for every image was decoded at 0, a code M1's decoder
    never read. It now puts them at their training means (kept in m1_codes.json); a scaler saved
    before they were kept still inverts them to 0."""
    from pyro_vae.inference.codes import CodeScaler

    g = torch.Generator().manual_seed(0)
    means = torch.randn(50, 3, generator=g)
    means[:, 1] = 0.8 + 0.01 * torch.randn(50, generator=g)  # inactive: Var_x E[z_1 | x] ~ 1e-4
    scaler = CodeScaler.fit(means)
    assert torch.equal(scaler.active, torch.tensor([True, False, True]))
    back = scaler.invert(scaler(means))
    assert torch.allclose(back[:, 1], means[:, 1].mean().expand(50)) and abs(back[0, 1].item() - 0.8) < 0.01
    again = CodeScaler.from_dict(scaler.to_dict())
    assert torch.equal(again.invert(scaler(means)), back)
    old = {key: value for key, value in scaler.to_dict().items() if key != "inactive_mean"}
    assert (CodeScaler.from_dict(old).invert(scaler(means))[:, 1] == 0).all()


@pytest.mark.parametrize("code,start", [("ENOSPC", "no space left"), ("EDQUOT", "no space left"),
                                        ("EACCES", "cannot write"), ("EROFS", "cannot write")])
def test_a_failed_write_is_named_by_its_errno(tmp_path, code, start):
    import errno
    import os

    number = getattr(errno, code)
    message = ckpt.write_failure_message(tmp_path / "c.pt", OSError(number, os.strerror(number)), existed=False)
    assert message.startswith(start) and message.endswith("(no c.pt was written)."), message


def test_a_continuous_likelihoods_number_is_a_density_unless_it_was_dequantized():
    from pyro_vae.inference import kinds

    assert kinds.number_kind("unit-interval", False) == kinds.DENSITY  # not dequantized unless said
    assert kinds.number_kind("unit-interval", False, dequantized=True) == kinds.DEQUANTIZED_BOUND
    assert kinds.number_kind("unit-interval", True, dequantized=True) == kinds.DENSITY  # binary data: nothing to dequantize


def test_a_bernoulli_number_is_a_mass_on_binary_data_whatever_the_config_says(tmp_path):
    """fit(config=...) on 0/1 tensors with binarize "none" recorded 'probability mass on 8-bit data'."""
    from pyro_vae import Config, build_vae, fit
    from pyro_vae.inference import kinds

    assert kinds.number_kind("binary", False) == kinds.number_kind("binary", True) == kinds.BINARY_MASS
    assert kinds.number_kind("8-bit", False) == kinds.EIGHT_BIT_MASS
    torch.manual_seed(0)
    x = (torch.rand(120, 1, 28, 28) > 0.5).float()
    config = Config()
    config.model.latent_dim, config.model.hidden_dims = 2, [16]
    model, guide = build_vae(config.model, (1, 28, 28))
    result = fit(model, guide, (x[:60], x[60:90], x[90:]), epochs=1, run_dir=tmp_path / "run", config=config,
                 figures=False)
    assert result.summary["kind"] == kinds.BINARY_MASS


@pytest.mark.parametrize("implementation", ["fast", "pyro"])
def test_the_elbo_draws_the_number_of_particles_asked_for(implementation):
    shapes = []
    model, guide = unit_normal_model_and_guide(shapes)
    make_objective("elbo", num_particles=4, implementation=implementation).differentiable_loss(model, guide, torch.zeros(3))
    assert shapes == [(4, 3)]  # one vectorized run of 4 particles of the 3 examples


@pytest.mark.parametrize("change,message", [
    ({"model": "vea"}, "unknown model 'vea'"),  # built a plain VAE
    ({"likelihood": "gausian"}, "unknown likelihood 'gausian'"),  # a bare KeyError
    ({"likelihood": "gaussian", "likelihood_scale": -1.0}, "likelihood_scale must be positive"),  # a NaN loss
    ({"latent_dim": 0}, "latent_dim must be between 1"),
    ({"hidden_dims": []}, "hidden_dims must be a non-empty list"),
    # fields of the wrong type, as only Python can give them (a TOML file or a flag is converted):
    ({"latent_dim": 4.5}, r"latent_dim must be a whole number, not 4\.5\."),  # torch's "type must be tuple of ints"
    ({"latent_dim": "8"}, "latent_dim must be a whole number, not '8'"),  # "'<=' not supported between 'int' and 'str'"
    ({"hidden_dims": "512,256"}, "hidden_dims must be a list of whole numbers, not '512,256'"),  # the same
    ({"hidden_dims": [512.0, 256]}, r"hidden_dims must be a list of whole numbers, not \[512\.0, 256\]"),
    ({"likelihood": "gaussian", "likelihood_scale": "0.1"}, "likelihood_scale must be a number, not '0.1'"),
    ({"batch_norm": "false"}, "batch_norm must be true or false, not 'false'"),  # a non-empty string is true
])
def test_build_vae_checks_its_config_as_the_cli_does(change, message):
    from pyro_vae import ModelConfig, build_vae
    from pyro_vae.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_vae(ModelConfig(**change), (1, 28, 28))
    with pytest.raises(ConfigError, match="takes a ModelConfig"):
        build_vae({"model": "vae"}, (1, 28, 28))


@pytest.mark.parametrize("options,message", [({"binarize": "dinamic"}, "unknown binarize 'dinamic'"),
                                             ({"train_limit": -5}, "train_limit must be 0"),
                                             ({"binarize": "dynamic", "seed": 3},
                                              "seed=3 has no effect with binarize='dynamic'"),
                                             ({"seed": 3}, "seed=3 has no effect with binarize='none'")])
def test_load_dataset_refuses_a_binarization_or_limit_it_would_misread(idx_dir, options, message):
    """'dinamic' gave one static draw without a word; train_limit -5 dropped the last 5 images; a seed
    with any binarization but 'static' was ignored."""
    from pyro_vae.data.datasets import load_dataset
    from pyro_vae.errors import DataError

    with pytest.raises(DataError, match=message):
        load_dataset("idx", str(idx_dir), **options)


def test_numpy_integers_are_counts_wherever_the_library_takes_one(idx_dir, tmp_path):
    """load_dataset(..., train_limit=np.int64(500)) was refused as "not a count", as were a NumPy
    k or batch_size of importance_log_likelihood, make_objective's k, the figures' n and steps,
    FolderOptions' size and build_vae's image_shape; a Config field set to one passed validate and
    then failed writing config.toml ("Object of type 'int64' is not TOML serializable"). Each now
    takes it as the Python int it is (and still refuses True, 4.0 or 4.5)."""
    import numpy as np

    from pyro_vae import plots
    from pyro_vae.build import build_vae
    from pyro_vae.config import Config, ModelConfig
    from pyro_vae.data.datasets import FolderOptions
    from pyro_vae.errors import ConfigError
    from pyro_vae.inference.loglik import importance_log_likelihood

    data = load_dataset("idx", str(idx_dir), binarize="threshold", train_limit=np.int64(500))
    assert len(data.train) == 500 and len(next(iter(data.batches("train", batch_size=np.int32(100))))) == 100
    with pytest.raises(DataError, match="train_limit must be 0 .* not True"):
        load_dataset("idx", str(idx_dir), train_limit=True)
    assert FolderOptions(size=np.int64(8), workers=np.int64(0)).check().size == 8
    model, guide = build_vae(ModelConfig(latent_dim=np.int64(2), hidden_dims=[np.int64(8)]),
                             tuple(np.array([1, 28, 28])))
    x = data.test.images[:4]
    pyro.set_rng_seed(0)
    given = importance_log_likelihood(model, guide, x, k=np.int64(3), batch_size=np.int64(2), k_chunk=np.int64(3),
                                      max_plate_nesting=np.int64(1))
    pyro.set_rng_seed(0)
    python = importance_log_likelihood(model, guide, x, k=3, batch_size=2, k_chunk=3, max_plate_nesting=1)
    assert type(given.k) is int and torch.equal(given.log_likelihood, python.log_likelihood)
    for bad in (True, 4.0, 4.5):
        with pytest.raises(ConfigError, match=r"K \(--k\) must be a whole number"):
            importance_log_likelihood(model, guide, x, k=bad)
    assert make_objective("iwae", k=np.int64(3)).k == 3
    assert plots.plot_samples(model, tmp_path / "s.png", n=np.int64(4)).is_file()
    assert plots.plot_interpolation(model, guide, x[0], x[1], tmp_path / "i.png", steps=np.int64(3)).is_file()
    config = Config()
    config.model.latent_dim, config.train.epochs, config.data.train_limit = np.int64(4), np.int64(3), np.int64(500)
    text = config.validate().dumps()
    assert "latent_dim = 4" in text and "epochs = 3" in text and "train_limit = 500" in text
