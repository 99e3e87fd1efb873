"""The plain autoencoder (--model ae): a point-mass guide, a loss that is the reconstruction
term alone (checked by hand), refusals where it has no meaning, and the side-by-side figure."""

from __future__ import annotations

import json
import re

import pyro.distributions as dist
import pytest
import torch
from matplotlib.image import imread
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch.nn import functional as F

from pyro_vae import ModelConfig, build_vae, make_objective
from pyro_vae.cli import main
from pyro_vae.inference.reconstruction import reconstruction_log_likelihood

SHAPE = (1, 8, 8)


def ae_pair():
    return build_vae(ModelConfig(model="ae", latent_dim=2, hidden_dims=[16]), SHAPE)


def binary_images(n=5, seed=0):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.4), generator=torch.Generator().manual_seed(seed))


def test_the_guide_is_a_point_mass_at_the_encoders_mean():
    model, guide = ae_pair()
    x = binary_images()
    first = poutine.trace(guide).get_trace(x).nodes["z"]
    second = poutine.trace(guide).get_trace(x).nodes["z"]
    assert isinstance(first["fn"], dist.Delta)
    assert torch.equal(first["value"], second["value"])                  # two calls, one code
    assert torch.equal(first["value"], guide.encoder(x)[0])              # ... the encoder's mean
    # log q(z | x) = 0 at the code: zero entropy, so the objective has no entropy term.
    assert torch.equal(first["fn"].log_prob(first["value"]), torch.zeros(len(x)))


@pytest.mark.parametrize("objective", [make_objective("elbo"), make_objective("analytic-kl"), Trace_ELBO()],
                         ids=["fast-elbo", "fast-analytic-kl", "pyro-trace-elbo"])
def test_the_loss_is_the_bernoulli_reconstruction_term_alone(objective):
    model, guide = ae_pair()
    x = binary_images()
    logits = model.decoder(guide.encoder(x)[0])
    by_hand = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")   # -sum log p(x | f(x))
    assert torch.allclose(objective.differentiable_loss(model, guide, x), by_hand, rtol=1e-5)
    assert torch.allclose(reconstruction_log_likelihood(model, guide, x).sum(), -by_hand, rtol=1e-5)


TINY = ["--dataset", "idx", "--latent-dim", "2", "--hidden-dims", "64", "--epochs", "2", "--batch-size", "64",
        "--no-progress"]


@pytest.fixture(scope="module")
def runs(idx_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ae")
    for model in ("ae", "vae"):
        assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(root / model), "--model", model,
                     *TINY]) == 0
    return root


def test_training_the_autoencoder_reports_reconstruction_not_an_elbo(runs, capsys):
    summary = json.loads((runs / "ae" / "summary.json").read_text())
    assert "test_elbo" not in summary and summary["unit"] == "nats per example"
    assert summary["selection"] == "best validation reconstruction log p(x | code)"
    assert -543 < summary["test_reconstruction"] < 0      # better than an untrained decoder's 784 log(1/2)
    rows = (runs / "ae" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    kl = [float(r.split(",")[header.index("valid_kl")]) for r in rows[1:]]
    assert kl == [0.0, 0.0]
    assert main(["evaluate", str(runs / "ae")]) == 0
    out = capsys.readouterr().out
    assert "reconstruction log p(x | code)" in out and "ELBO " not in out.replace("no ELBO", "")
    # the number's kind, in the file and on the console (binarized data: a mass on binary data)
    assert summary["kind"] == "probability mass on binary data" and summary["quantity"] == "log p(x | code)"
    assert "nats per example (a probability mass on binary data;" in out
    assert json.loads((runs / "ae" / "evaluation.json").read_text())["kind"] == summary["kind"]


def test_what_makes_no_sense_for_an_autoencoder_is_refused(runs, capsys):
    before = {p.name: p.read_bytes() for p in (runs / "ae").iterdir() if p.is_file()}
    assert main(["evaluate", str(runs / "ae"), "--k", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert "autoencoder has no prior p(z) and so no log p(x)" in err and len(err.splitlines()) == 1
    assert main(["plot", str(runs / "ae"), "--kind", "prior-check", "-o", str(runs / "p.png")]) == 2
    assert "a plain autoencoder has none" in capsys.readouterr().err
    assert not (runs / "ae" / "loglik.json").exists() and not (runs / "p.png").exists()
    assert before == {p.name: p.read_bytes() for p in (runs / "ae").iterdir() if p.is_file()}
    assert main(["train", "--model", "ae", "--objective", "iwae", "--run-dir", str(runs / "x")]) == 2
    assert "with --model ae, which has no KL term" in capsys.readouterr().err
    assert not (runs / "x").exists()
    # a prior or flow: the autoencoder has neither a prior nor a Gaussian guide to keep
    assert main(["train", "--model", "ae", "--prior", "vamp", "--run-dir", str(runs / "x")]) == 2
    err = capsys.readouterr().err
    assert "--model ae has no prior and a point-mass code" in err and "Gaussian guide" not in err
    assert not (runs / "x").exists()


@pytest.mark.parametrize("kind", ["reconstructions", "latent", "manifold", "interpolate", "samples"])
def test_the_autoencoders_figures(runs, kind):
    out = runs / f"{kind}.png"
    assert main(["plot", str(runs / "ae"), "--kind", kind, "-o", str(out)]) == 0
    assert imread(out).std() > 0.02  # drawn, not blank


def test_manifold_spans_the_autoencoders_codes(runs, tmp_path):
    """An autoencoder has no prior quantiles: its manifold decodes an even grid from the 1st to
    the 99th percentile of its test codes (a VAE's spans N(0, I)'s 5%..95% quantiles)."""
    from pyro_vae.runs import figure_from_run, open_run

    seen = {}
    for name in ("ae", "vae"):
        run = open_run(runs / name)
        decode = run.model.decode_mean

        def recording(z, decode=decode, name=name):  # note the grid the figure decodes
            seen[name] = z
            return decode(z)

        run.model.decode_mean = recording
        figure_from_run(run, "manifold", tmp_path / f"{name}.png", limit=200 if name == "ae" else None)
    codes = open_run(runs / "ae").guide.encode(open_run(runs / "ae").dataset().test.images[:200])[0]
    low, high = torch.quantile(codes, torch.tensor([0.01, 0.99]), dim=0)
    grid = seen["ae"]
    assert grid.shape == (400, 2)
    assert torch.allclose(grid.min(0).values, low, atol=1e-5) and torch.allclose(grid.max(0).values, high, atol=1e-5)
    prior = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.05, 0.95]))
    assert torch.allclose(seen["vae"].min(0).values, prior[0].expand(2), atol=1e-5)


def test_side_by_side_figure_of_an_autoencoder_and_a_vae(runs, capsys):
    out = runs / "compare.png"
    assert main(["plot", str(runs / "ae"), str(runs / "vae"), "--kind", "compare", "-o", str(out), "-n", "16"]) == 0
    image = imread(out)
    assert image.shape[1] > image.shape[0]  # two columns (codes over N(0, I) samples) side by side
    assert image.std() > 0.05
    assert main(["plot", str(runs / "ae"), str(runs / "vae"), "--kind", "latent", "-o", str(runs / "l.png")]) == 0
    assert imread(runs / "l.png").shape[1] > imread(runs / "l.png").shape[0]
    capsys.readouterr()
    assert main(["plot", str(runs / "ae"), str(runs / "vae"), "--kind", "samples", "-o", str(runs / "s2.png")]) == 2
    err = capsys.readouterr().err
    assert "--kind samples draws one run" in err and not (runs / "s2.png").exists()


def test_side_by_side_figure_titles_give_each_number_its_standard_error_images_k_and_kind(runs, tmp_path,
                                                                                         monkeypatch):
    """plot --kind compare titled "reconstruction log p(x | code): -537.9 nats/image" and "log mean
    p(x | z) -535.8 nats/image": no ±, no image count or K, no kind of number."""
    from pyro_vae import plots, runs as runs_module
    from pyro_vae.inference.kinds import BINARY_MASS

    titles = []
    monkeypatch.setattr(plots, "plot_compare", lambda entries, *a, **k: titles.extend(e[0] for e in entries))
    monkeypatch.setattr(runs_module, "GENERATION_IMAGES", 20)  # fewer images than --limit: both counts named
    opened = [runs_module.open_run(runs / name) for name in ("ae", "vae")]
    runs_module.figure_from_runs(opened, "compare", tmp_path / "c.png", n=4, limit=50)
    x = opened[0].dataset().test.head(50).images
    recon = reconstruction_log_likelihood(opened[0].model, opened[0].guide, x).double()
    mean, se = recon.mean().item(), recon.std().item() / 50 ** 0.5
    assert f"reconstruction log p(x | code): {mean:.1f} ± {se:.1f} nats/image" in titles[0]
    for title in titles:
        assert "log (1/K) sum_k p(x | z_k), z_k ~ N(0, I), K=1000: " in title
        assert title.count(" nats/image") == 2 and len(re.findall(r"-?\d+\.\d ± \d+\.\d nats/image", title)) == 2
        assert f"(mean ± s.e. over 50 test images, the second over their first 20;\n{BINARY_MASS})" in title


def test_side_by_side_figure_titles_show_a_small_standard_error_not_zero(runs, tmp_path, monkeypatch):
    """A standard error of 0.04 nats was titled "± 0.0" (one decimal): it now shows its first
    significant digit, the mean to the same place; one of 1.2 keeps one decimal."""
    from pyro_vae import plots, runs as runs_module
    from pyro_vae.inference import reconstruction

    titles = []
    monkeypatch.setattr(plots, "plot_compare", lambda entries, *a, **k: titles.extend(e[0] for e in entries))
    spread = torch.tensor([-1.0, 1.0]).repeat(25).double()  # std 1.0102 over 50 images
    monkeypatch.setattr(reconstruction, "reconstruction_log_likelihood",
                        lambda model, guide, x: -537.91234 + 0.04 / (1.0102 / 50 ** 0.5) * spread[:len(x)])
    monkeypatch.setattr(reconstruction, "sampled_code_log_likelihood",
                        lambda model, x, k, prior=None: -535.8 + 1.2 / (1.0102 / 50 ** 0.5) * spread[:len(x)])
    monkeypatch.setattr(runs_module, "GENERATION_IMAGES", 50)
    runs_module.figure_from_runs([runs_module.open_run(runs / "vae")], "compare", tmp_path / "c.png", n=4, limit=50)
    assert "reconstruction log p(x | code): -537.91 ± 0.04 nats/image" in titles[0], titles[0]
    assert "K=1000: -535.8 ± 1.2 nats/image" in titles[0], titles[0]


@pytest.mark.parametrize("names", [("vae",), ("ae", "vae")])
def test_the_side_by_side_figures_draws_follow_the_seed_for_one_run_as_for_several(runs, tmp_path, monkeypatch,
                                                                                  names):
    """`plot RUN --kind compare --seed 7` (one run) drew the same z ~ N(0, I) as --seed 0: the seed
    was not passed on, so the option was accepted and ignored; with two runs it was used."""
    from pyro_vae import plots

    seeds = []
    monkeypatch.setattr(plots, "plot_compare", lambda *a, seed=0, **k: seeds.append(seed) or a[3])
    monkeypatch.setattr("pyro_vae.runs.GENERATION_IMAGES", 5)
    monkeypatch.setattr("pyro_vae.runs.GENERATION_DRAWS", 5)
    for seed in ("7", "8"):
        assert main(["plot", *(str(runs / name) for name in names), "--kind", "compare", "--seed", seed,
                     "--limit", "20", "-n", "4", "-o", str(tmp_path / "c.png")]) == 0
    assert seeds == [7, 8]


def test_a_side_by_side_figure_of_runs_binarized_differently_is_refused(runs, tmp_path, idx_dir, capsys):
    """`plot RUN_8BIT RUN_BERNOULLI --kind compare` scored the Bernoulli run on the first run's grey images (no
    mass: its support is 0/1) and titled it "probability mass on binary data"; the other order titled an 8-bit
    likelihood's numbers on 0/1 images "probability mass on 8-bit data". Both exited 0."""
    grey = tmp_path / "grey"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(grey), *TINY, "--epochs", "1",
                 "--likelihood", "discretized-logistic", "--binarize", "none", "--figures", "false"]) == 0
    capsys.readouterr()
    for pair in ((grey, runs / "vae"), (runs / "vae", grey)):
        out = tmp_path / "c.png"
        assert main(["plot", *map(str, pair), "--kind", "compare", "--limit", "20", "-n", "4", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert "not binarized alike" in err and "dynamic" in err and "none" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_side_by_side_figure_of_one_run_reads_the_default_5000_images_and_draws_no_circle_it_names(
        idx_dir, tmp_path, monkeypatch):
    """`plot RUN --kind compare` (one run, no --limit) read every test image, where its help says
    5000; and a title named the dashed N(0, I) circle on principal components, where none is drawn."""
    from pyro_vae import plots
    from pyro_vae.cli import main

    seen = []
    monkeypatch.setattr(plots, "_scatter_codes", lambda ax, points, *a, **k: seen.append(len(points)))
    monkeypatch.setattr(plots, "_save", lambda fig, path: seen.append([ax.get_title() for ax in fig.axes]) or path)
    monkeypatch.setattr("pyro_vae.runs.FIGURE_IMAGES", 30)  # the idx test split is small: a default below it
    run = tmp_path / "vae4"  # a 4-D code: drawn on its first two principal components
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, "--latent-dim", "4",
                 "--figures", "false"]) == 0
    assert main(["plot", str(run), "--kind", "compare", "-o", str(tmp_path / "c.png")]) == 0
    assert seen[0] == 30
    assert "principal components of" in seen[1][0] and "N(0, I))" not in seen[1][0].splitlines()[-1]


def test_sampled_code_log_likelihood_is_log_p_x_for_a_linear_gaussian_decoder():
    """With p(x | z) = N(W z + b, s^2 I) and z ~ N(0, 1), log (1/K) sum_k p(x | z_k) estimates
    log N(x; b, W W^T + s^2 I), known in closed form."""
    from types import SimpleNamespace

    from pyro_vae.inference.reconstruction import sampled_code_log_likelihood
    from pyro_vae.likelihoods import make_likelihood

    torch.manual_seed(0)
    linear = torch.nn.Linear(1, 4)
    decoder = lambda z: linear(z).reshape(*z.shape[:-1], 1, 2, 2)  # noqa: E731
    model = SimpleNamespace(decoder=decoder, likelihood=make_likelihood("gaussian", (1, 2, 2), 0.5), latent_dim=1)
    with torch.no_grad():
        x = decoder(torch.randn(6, 1)) + 0.5 * torch.randn(6, 1, 2, 2)   # drawn from the model
        w, b = linear.weight, linear.bias
        exact = dist.MultivariateNormal(b, w @ w.T + 0.25 * torch.eye(4)).log_prob(x.reshape(6, 4))
        estimate = sampled_code_log_likelihood(model, x, k=200_000)
    assert torch.allclose(estimate, exact, atol=0.02)


def test_a_seed_that_draws_nothing_from_an_autoencoder_is_refused(runs, capsys):
    """Its reconstruction score is deterministic: --seed 4 and --seed 5 printed the same number."""
    before = {p.name: p.read_bytes() for p in (runs / "ae").iterdir() if p.is_file()}
    for extra in ([], ["--limit", "10", "--subset", "first"]):
        assert main(["evaluate", str(runs / "ae"), "--seed", "4", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "--seed has no effect on the reconstruction score" in err and len(err.splitlines()) == 1
    assert before == {p.name: p.read_bytes() for p in (runs / "ae").iterdir() if p.is_file()}
    scores = []
    for seed in ("4", "5"):  # with a random --limit subset the seed picks the images: accepted, and it matters
        output = runs / f"evaluation-seed{seed}.json"
        assert main(["evaluate", str(runs / "ae"), "--seed", seed, "--limit", "10", "-o", str(output)]) == 0
        scores.append(json.loads(output.read_text())["reconstruction"])
    assert scores[0] != scores[1]
