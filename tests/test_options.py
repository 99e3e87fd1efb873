"""Every option means what it says: options that would have no effect are refused before
anything is written, --help describes every option, the console names what it prints,
and evaluate says what its estimate is, how it chose its examples and how far to trust it."""

import io
import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from pyro_vae import plots
from pyro_vae.cli import build_parser, main
from pyro_vae.config import Config, ineffective_options
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.inference.checkpoint import load_checkpoint, save_checkpoint
from pyro_vae.inference.loglik import LogLikelihoodEstimate, importance_log_likelihood
from pyro_vae.inference.train import Trainer
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.runs import ProgressReport, _attribute_mask, ess_warning, evaluation_examples, open_run

TINY = ["--dataset", "idx", "--latent-dim", "3", "--hidden-dims", "32", "--epochs", "1", "--batch-size", "100",
        "--train-limit", "300", "--no-progress"]


def _train(idx_dir, run, *extra):
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY, *extra]) == 0
    return run


@pytest.fixture(scope="module")
def vae_run(idx_dir, tmp_path_factory):
    return _train(idx_dir, tmp_path_factory.mktemp("options") / "vae")


@pytest.fixture(scope="module")
def cvae_run(idx_dir, tmp_path_factory):
    return _train(idx_dir, tmp_path_factory.mktemp("options") / "cvae", "--model", "cvae")


def _files(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def _one_sentence(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# -- options that would be silently ignored are refused --------------------------------------

REFUSED = [
    (["--model", "m2", "--labels", "40", "--objective", "iwae"], "--objective iwae has no effect with --model m2"),
    (["--model", "m2", "--labels", "40", "--num-particles", "3"], "--num-particles 3 has no effect with --model m2"),
    (["--model", "m2", "--labels", "40", "--kl-warmup-epochs", "2"], "--kl-warmup-epochs 2 has no effect"),
    (["--k", "50", "--objective", "analytic-kl"], "--k 50 has no effect with --objective analytic-kl"),
    (["--beta", "0", "--kl-warmup-epochs", "3"], "--kl-warmup-epochs 3 has no effect with --beta 0"),  # 0 to 0
    (["--beta", "0", "--kl-warmup-steps", "30"], "--kl-warmup-steps 30 has no effect with --beta 0"),
    (["--kl-warmup-steps", "1"], "--kl-warmup-steps 1 has no effect (a warm-up over one step"),
    (["--num-particles", "4", "--objective", "iwae"], "--num-particles 4 has no effect with --objective iwae"),
    (["--conditional-prior", "true", "--model", "vae"], "--conditional-prior true has no effect with --model vae"),
    (["--likelihood-scale", "0.5", "--likelihood", "bernoulli"],
     "--likelihood-scale 0.5 has no effect with --likelihood bernoulli"),
    (["--likelihood", "gaussian", "--binarize", "dynamic"], "--binarize dynamic makes 0/1 pixels"),
    (["--likelihood", "continuous-bernoulli", "--binarize", "threshold"], "--binarize threshold makes 0/1 pixels"),
    (["--given-quadrants", "2"], "--given-quadrants 2 has no effect with --model vae"),
    (["--alpha", "10"], "--alpha 10.0 has no effect with --model vae"),
    (["--conv-channels", "8,16"], "--conv-channels 8,16 has no effect with --network mlp"),
    (["--model", "m2", "--labels", "40", "--conv-channels", "8,16"],
     "drop it or choose --network conv or --classifier-network conv"),  # M2 has a second network to name
    (["--network", "conv", "--hidden-dims", "64,32"], "beyond its first size with --network conv"),
    (["--workers", "2"], "--workers 2 has no effect with --dataset idx"),
    (["--label-at-encoder-input", "true"], "--label-at-encoder-input true has no effect with --model vae"),
    (["--classifier-network", "conv"], "--classifier-network conv has no effect with --model vae"),
    (["--model", "m2", "--labels", "40", "--network", "conv", "--classifier-network", "conv", "--hidden-dims",
      "64,32"], "beyond its first size with --network conv"),
    (["--model", "m2", "--labels", "40", "--classifier-network", "conv", "--activation", "gated"],
     "activation 'gated' (gated dense layers) is for the MLP; use --classifier-network mlp"),
]


@pytest.mark.parametrize("flags,message", REFUSED)
def test_an_option_that_would_have_no_effect_is_refused_before_anything_is_written(idx_dir, tmp_path, capsys,
                                                                                  flags, message):
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(idx_dir), "--run-dir", str(run), *TINY]
    if "--hidden-dims" in flags:
        argv.remove("--hidden-dims"), argv.remove("32")
    assert main(argv + flags) == 2
    assert message in _one_sentence(capsys)
    assert not run.exists()


def test_the_same_rule_holds_for_a_config_file(idx_dir, tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[train]\nobjective = "elbo"\nk = 50\n')
    assert main(["train", "--config", str(path), "--data-dir", str(idx_dir), "--run-dir", str(tmp_path / "r"),
                 *TINY]) == 2
    assert "--k 50 has no effect with --objective elbo" in _one_sentence(capsys)


@pytest.mark.parametrize("settings", [
    {"train.k": 5, "train.objective": "elbo"},  # the default of an unused option claims nothing
    {"train.k": 50, "train.objective": "iwae"},
    {"model.likelihood": "gaussian-learned", "model.likelihood_scale": 0.05},  # its starting sigma
    {"model.likelihood": "gaussian", "model.likelihood_scale": 0.3, "data.binarize": "none"},
    {"model.model": "cvae", "model.conditional_prior": True},
    {"model.model": "m2", "data.labels": 100, "train.alpha": 50.0},
    {"model.network": "conv", "model.conv_channels": [8, 16], "model.hidden_dims": [64]},
    {"data.dataset": "image-folder", "data.data_dir": "/x", "data.workers": 2},
])
def test_options_that_take_effect_are_accepted(settings):
    config = Config()
    for key, value in settings.items():
        config.set(key, value)
    assert ineffective_options(config.validate()) == []


def test_only_gaussian_likelihoods_use_the_scale():
    assert {name for name, cls in LIKELIHOODS.items() if cls.uses_scale} == {
        "gaussian", "gaussian-learned", "gaussian-learned-per-channel", "gaussian-learned-per-pixel"}


def test_a_run_saved_with_an_option_that_had_no_effect_still_opens(vae_run, tmp_path):
    """Runs written before a rule existed keep working: their config.toml is what they ran with."""
    old = tmp_path / "old"
    shutil.copytree(vae_run, old)
    text = (old / "config.toml").read_text().replace("k = 5", "k = 50")
    assert "k = 50" in text
    (old / "config.toml").write_text(text)
    assert open_run(old).config.train.k == 50


# -- resume with a config file ---------------------------------------------------------------

def test_resume_applies_the_config_file_like_flags(vae_run, tmp_path, capsys):
    run = tmp_path / "resumed"
    shutil.copytree(vae_run, run)
    path = tmp_path / "more.toml"
    path.write_text('[data]\ndataset = "idx"\nbinarize = "auto"\n[train]\nepochs = 2\n')  # same run, 1 more epoch
    assert main(["train", "--resume", str(run), "--config", str(path), "--no-progress"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    assert "epochs = 2" in (run / "config.toml").read_text()
    # A flag beats the file, as for a new run.
    assert main(["train", "--resume", str(run), "--config", str(path), "--epochs", "3", "--no-progress"]) == 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("text,flags,message", [
    ("[model]\nlatent_dim = 7\n", [], "cannot change model.latent_dim when resuming"),
    ("[train]\nepochs = 5\n", ["--workers", "2"], "--workers 2 has no effect with --dataset idx"),
    ("[train]\nepochs = 5\n", ["--run-dir", "/elsewhere"], "drop --run-dir"),
    # a finished run trains nothing, so an option that acts only while training does nothing
    ("[train]\nepochs = 1\n", ["--figures", "false"], "--figures false has no effect: "),
    ("[train]\nepochs = 1\n", ["--patience", "3", "--figures", "false"], "--figures false, --patience 3 have no effect"),
])
def test_resume_refusals_leave_the_run_untouched(vae_run, tmp_path, capsys, text, flags, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    before = _files(vae_run)
    assert main(["train", "--resume", str(vae_run), "--config", str(path), "--no-progress", *flags]) == 2
    assert message in _one_sentence(capsys)
    assert _files(vae_run) == before


# -- the CLI says what it means ---------------------------------------------------------------

def test_train_help_lists_each_option_with_what_it_does_and_its_choices(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("--model {vae,cvae,m2,m1m2,adgm,quadrant,ae,hvae}", "--objective {elbo,analytic-kl,iwae,iwae-dreg}",
                     "--network {mlp,conv}", "--activation {relu,softplus,tanh,elu,leaky_relu,gelu,gated}",
                     "--prior {standard,mog,vamp}", "--flow {none,iaf,householder,planar}",
                     "--select-by {auto,valid-elbo,valid-iwae,valid-loglik}",
                     "--binarize {auto,none,dynamic,static,threshold}", "--likelihood {bernoulli,",
                     "--conditional-prior {true,false}", "dimensions of the code z (default: 20)"):
        assert fragment in text


def test_every_config_option_has_a_description_in_help():
    """--prior-components, --pseudo-inputs and --flow-steps had none: --help gave their default alone."""
    from pyro_vae.config import SECTIONS, field_help

    assert {f"{section}.{name}" for section, cls in SECTIONS.items()
            for name, text in field_help(cls).items() if not text} == set()


def test_an_ellipsis_in_an_options_description_is_kept_where_it_means_something():
    """The comments' "..." that join two fields' descriptions are dropped; any other was cut
    too (--figures read "`pyro-vae plot RUN --kind ` draws them later")."""
    from pyro_vae.config import ModelConfig, TrainConfig, field_help

    train, model = field_help(TrainConfig), field_help(ModelConfig)
    assert "`pyro-vae plot RUN --kind ...` draws them later" in train["figures"]
    assert "(z1 -> ... -> z2)" in model["top_hidden_dims"]
    assert train["kl_warmup_epochs"].endswith("(0 = none)") and not train["kl_warmup_steps"].startswith(".")


def test_evaluate_help_names_everything_the_seed_draws(capsys):
    """--seed's help named the importance samples and the --limit subset, not the dequantization noise
    that it also draws for a continuous likelihood's log p(x) (inference.dequantize)."""
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "with --k a continuous likelihood's dequantization noise, and the --limit subset" in text


def test_evaluate_help_gives_the_cpus_default_chunk():
    """--batch-size's help said the default chunk holds about 10,000 example-samples; on the CPU
    (loglik.chunk_budget) it holds as many as keep the decoder's output under 4 MiB: 1,336 for 28x28."""
    import torch

    from pyro_vae.inference.loglik import chunk_budget

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    text = next(a.help for a in sub.choices["evaluate"]._actions if a.dest == "batch_size")
    assert f"{chunk_budget(torch.zeros(1, 1, 28, 28)):,} for 28x28 images" in text
    assert "up to 10,000 example-samples on a GPU" in text


@pytest.mark.parametrize("command", ["sweep", "compare", "plot"])
def test_metric_help_lists_every_metric_the_command_accepts(command):
    """sweep --help listed six metrics, leaving out valid_loglik, which it accepts."""
    from pyro_vae.experiments.sweep import METRICS

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    (action,) = [a for a in sub.choices[command]._actions if a.dest == "metric"]
    assert f"({', '.join(METRICS)}; default " in action.help
    assert "valid_loglik" in METRICS


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "reconstruct", "plot"])
def test_every_option_of_every_command_has_a_description(command):
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    parser = sub.choices[command]
    for action in parser._actions:
        if action.dest == "help":
            continue
        text = action.help or ""
        assert len(text.split()) >= 2 and not text.startswith("default"), (command, action.dest, text)


def test_an_unknown_choice_lists_the_choices_once(tmp_path, capsys):
    assert main(["train", "--objective", "iwea", "--run-dir", str(tmp_path / "r")]) == 2
    err = _one_sentence(capsys)
    assert err.count("elbo") == 1 and "valid:" not in err and "did you mean 'iwae'" in err


def _describe(settings, row, steps_per_epoch=10):
    trainer = SimpleNamespace(settings=SimpleNamespace(**settings), steps_per_epoch=lambda: steps_per_epoch)
    trainer.training_objective = lambda r: Trainer.training_objective(trainer, r)
    return Trainer.describe(trainer, row)


ROW = {"epoch": 3, "step": 30, "train_objective": -100.0, "valid_elbo": -101.0, "valid_reconstruction": -90.0,
       "valid_kl": 11.0, "seconds": 1.0}
PLAIN = dict(objective_label="ELBO", beta=1.0, kl_warmup_steps=0, kl_warmup_epochs=0, selection_k=0, quantity="log p(x)")


@pytest.mark.parametrize("settings,row,expected", [
    ({}, {}, "train ELBO "),
    ({"beta": 2.0}, {}, "train objective (ELBO, beta=2) "),
    ({"kl_warmup_epochs": 3}, {}, "train objective (ELBO, KL warm-up to beta=1) "),  # epoch 3 of a 3-epoch warm-up
    ({"kl_warmup_epochs": 2}, {}, "train ELBO "),  # warm-up over before epoch 3 began
    ({"objective_label": "IWAE bound K=5", "selection_k": 5}, {"valid_iwae": -99.5},
     "train IWAE bound K=5 "),
])
def test_the_epoch_line_names_the_training_objective(settings, row, expected):
    line = _describe({**PLAIN, **settings}, {**ROW, **row})
    assert expected in line
    assert ("valid IWAE bound K=5    -99.50 (selects)" in line) == ("valid_iwae" in row)


def test_the_autoencoders_epoch_line_calls_its_number_a_reconstruction_term_not_an_elbo():
    """--model ae: the validation number is the reconstruction log p(x | code), no ELBO."""
    trainer = SimpleNamespace(settings=SimpleNamespace(**{**PLAIN, "objective_label": "reconstruction log p(x | code)"}),
                              steps_per_epoch=lambda: 10, model=SimpleNamespace(has_marginal_likelihood=False))
    trainer.training_objective = lambda r: Trainer.training_objective(trainer, r)
    row = {**ROW, "valid_elbo": -90.0, "valid_kl": 0.0, "valid_reconstruction_stderr": 0.04}
    line = Trainer.describe(trainer, row)
    assert "ELBO" not in line and "KL" not in line
    assert ("train reconstruction log p(x | code)   -100.00  valid reconstruction log p(x | code)    -90.00 ± 0.04 "
            "(not a bound on log p(x): an autoencoder has none)") in line


def test_iwae_training_prints_its_bound_and_the_selecting_iwae_bound(idx_dir, tmp_path, capsys):
    _train(idx_dir, tmp_path / "iwae", "--objective", "iwae", "--k", "3")
    out = capsys.readouterr().out
    assert "train IWAE bound K=3" in out and "valid IWAE bound K=3" in out and "train ELBO" not in out


# -- evaluate -----------------------------------------------------------------------------

def test_evaluate_names_the_conditional_estimate_and_the_meaning_of_the_error(cvae_run, capsys):
    assert main(["evaluate", str(cvae_run), "--k", "4", "--limit", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test log p(x | y) ") and "± one standard error over the 30 test images" in out
    result = json.loads((cvae_run / "loglik.json").read_text())
    assert result["estimate"] == result["quantity"] == "log p(x | y)"


def test_evaluate_names_the_quadrant_estimate(idx_dir, tmp_path, capsys):
    """Quadrant completion's numbers are log p(x_m | x_g), over the missing pixels alone:
    named so wherever printed or recorded, with bits/dim over the pixels scored (3/4 of them
    with one quadrant given), not over the whole image."""
    import math

    run = _train(idx_dir, tmp_path / "quadrant", "--model", "quadrant")
    quantity = "log p(x_m | x_g), x_g the top-left quadrant"
    out = capsys.readouterr().out
    assert f"(a lower bound on {quantity}, " in out and "a lower bound on log p(x)" not in out
    summary = json.loads((run / "summary.json").read_text())
    pixels = summary["image_dimensions"]
    assert (summary["quantity"], summary["dimensions"]) == (quantity, pixels * 3 // 4)
    assert f"bits/dim over the {pixels * 3 // 4} of {pixels} pixel values scored" in out
    assert main(["evaluate", str(run), "--k", "2", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test log p(x_m | x_g) ") and "(x_g the top-left quadrant)" in out
    result = json.loads((run / "loglik.json").read_text())
    assert (result["quantity"], result["dimensions"], result["image_dimensions"]) == (
        quantity, pixels * 3 // 4, pixels)
    assert result["bits_per_dim"] == pytest.approx(-result["log_likelihood_mean"] / (pixels * 3 // 4 * math.log(2)))
    assert main(["evaluate", str(run), "--limit", "10", "-o", str(tmp_path / "elbo.json")]) == 0
    assert f"a lower bound on {quantity}, " in capsys.readouterr().out
    assert json.loads((tmp_path / "elbo.json").read_text())["dimensions"] == pixels * 3 // 4


def test_the_conditional_vae_names_log_p_x_given_y_not_log_p_x(cvae_run, capsys, tmp_path):
    """The CVAE's ELBO bounds log p(x | y): its summary and evaluate say so."""
    assert json.loads((cvae_run / "summary.json").read_text())["quantity"] == "log p(x | y)"
    assert main(["evaluate", str(cvae_run), "--limit", "10", "-o", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "a lower bound on log p(x | y), " in out and "log p(x)" not in out
    assert json.loads((tmp_path / "e.json").read_text())["quantity"] == "log p(x | y)"


def test_limit_draws_a_seeded_random_subset_by_default(vae_run):
    run = open_run(vae_run)
    test = run.dataset().test
    part, record, indices = evaluation_examples(run, "test", 40, seed=3)
    rows = torch.randperm(len(test), generator=torch.Generator().manual_seed(3))[:40].sort().values
    assert torch.equal(indices, rows)
    assert torch.equal(part.images, test.images[rows]) and torch.equal(part.labels, test.labels[rows])
    assert rows.max() >= 40  # not the first 40
    assert record == {"split": "test", "subset": "random", "limit": 40, "subset_seed": 3}
    first, record, indices = evaluation_examples(run, "test", 40, subset="first")
    assert torch.equal(first.images, test.images[:40]) and record["subset"] == "first"
    assert torch.equal(indices, torch.arange(40))


def test_evaluate_records_the_subset(vae_run, tmp_path):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(vae_run), "--limit", "25", "--seed", "4", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["subset"], result["limit"], result["subset_seed"], result["examples"]) == ("random", 25, 4, 25)


def test_the_training_split_of_a_dynamically_binarized_run_is_scored_binarized(vae_run, tmp_path, capsys):
    run = open_run(vae_run)
    assert run.config.data.binarize == "dynamic"
    part, _, _ = evaluation_examples(run, "train", 50, seed=0)
    again, _, _ = evaluation_examples(run, "train", 50, seed=0)
    assert ((part.images == 0) | (part.images == 1)).all() and torch.equal(part.images, again.images)
    grey = run.dataset().train.images
    assert not ((grey == 0) | (grey == 1)).all()  # the stored training images are grey
    for flags in ([], ["--k", "3"]):
        assert main(["evaluate", str(vae_run), "--split", "train", "--limit", "50", "-o", str(tmp_path / "t.json"),
                     *flags]) == 0
        assert json.loads((tmp_path / "t.json").read_text())["split"] == "train"


def test_evaluate_refuses_a_model_with_nan_weights(vae_run, tmp_path, capsys):
    run = tmp_path / "nan"
    shutil.copytree(vae_run, run)
    checkpoint = load_checkpoint(run / "checkpoint_best.pt")
    name = next(iter(checkpoint["model"]))
    checkpoint["model"][name][..., 0] = float("nan")
    save_checkpoint(run / "checkpoint_best.pt", checkpoint)
    before = _files(run)
    for argv in (["evaluate", str(run)], ["evaluate", str(run), "--k", "3"]):
        assert main(argv) == 2
        assert f"holds NaN or infinite weights (in model.{name})" in _one_sentence(capsys)
    assert _files(run) == before
    assert main(["evaluate", str(run), "--checkpoint", "last", "-o", str(tmp_path / "last.json")]) == 0


def test_progress_lines_count_examples_across_passes():
    stream = io.StringIO()
    report = ProgressReport("test log p(x), K=10", 200, stream=stream, every=0)
    for done in (50, 100, 50, 100):  # two passes of 100 (M2 scores each class in turn)
        report(done, 100)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ")[1].split(",")[0] for line in lines] == [
        "50 of 200 examples", "100 of 200 examples", "150 of 200 examples", "200 of 200 examples"]


def test_the_estimator_reports_progress_after_every_chunk(vae_run):
    run = open_run(vae_run)
    x = run.dataset().test.images[:25]
    calls = []
    importance_log_likelihood(run.model, run.guide, x, k=4, batch_size=10, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(10, 25), (20, 25), (25, 25)]


def test_a_low_effective_sample_size_is_warned_about():
    low = LogLikelihoodEstimate(torch.zeros(3), torch.tensor([5.0, 10.0, 15.0]), k=1000)
    assert "mean effective sample size is 10.0 of K=1000 (1.00%" in ess_warning(low)
    # just below the threshold: the share was printed "5.0%, below 5%" (evaluate --k 50, mean ESS 2.4959)
    near = LogLikelihoodEstimate(torch.zeros(2), torch.tensor([2.4959, 2.4959]), k=50)
    assert "(4.99%, below 5%)" in ess_warning(near)
    assert ess_warning(LogLikelihoodEstimate(torch.zeros(2), torch.tensor([60.0, 40.0]), k=1000)) == ""


def test_the_effective_sample_size_of_a_summed_out_label_is_judged_against_all_its_weights():
    """M2's log p(x) pools the C * K weights of its classes (an ESS of 1 to C * K): a mean ESS of
    30 over 10 classes at K=100 is 3% of its 1,000 weights, and was judged against K alone (30%)."""
    pooled = LogLikelihoodEstimate(torch.zeros(2), torch.tensor([20.0, 40.0]), k=100, draws=1000)
    assert ("mean effective sample size is 30.0 of 1000 weights (K=100 for each of 10 classes) (3.00%, below 5%)"
            in ess_warning(pooled))
    assert pooled.summary()["ess_of"] == 1000
    assert LogLikelihoodEstimate(torch.zeros(2), torch.ones(2), k=7).summary()["ess_of"] == 7


# -- figures a reader can read ---------------------------------------------------------------

@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save, kept open for inspection."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.append(fig) or path)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def test_prior_check_has_integer_ticks_a_visible_threshold_and_says_what_is_drawn(figures):
    torch.manual_seed(0)

    class Guide:  # dimension d has posterior N(d * x, 0.5): KL grows with d; dimension 0 is collapsed
        def encode(self, x):
            loc = x[:, :1] * torch.arange(6.0)
            scale = torch.full_like(loc, 0.5)
            scale[:, 0] = 1.0
            return loc, scale

    plots.plot_prior_check(Guide(), torch.randn(400, 1), "unused.png", max_dims=4)
    fig = figures[0]
    bars = fig.axes[-1]
    ticks = [t.get_text().replace("\N{MINUS SIGN}", "-") for t in bars.get_xticklabels()]
    assert ticks and all(t.lstrip("-").isdigit() for t in ticks)
    assert bars.get_yscale() == "log"
    low, high = bars.get_ylim()
    threshold = [line for line in bars.get_lines() if line.get_ydata()[0] == plots.INACTIVE_KL]
    assert threshold and low < plots.INACTIVE_KL < high
    title = fig._suptitle.get_text()  # Figure.get_suptitle needs matplotlib 3.8; pyproject allows 3.7
    assert "1 of 6 dimensions inactive" in title and "the 4 of 6 dimensions with the largest KL" in title
    assert len(fig.axes) == 5  # four histograms and the bars


def test_conditional_samples_show_every_class_with_a_label_per_row(cvae_run, figures):
    run = open_run(cvae_run)
    assert run.model.num_classes == 4  # the synthetic IDX labels' classes 0..3
    plots.plot_samples(run.model, "unused.png", n=8, class_names=("zero", "one"))
    fig = figures[0]
    names = [ax.get_ylabel() for ax in fig.axes]
    assert names == ["zero", "one", "2", "3"]
    assert all(ax.images[0].get_array().shape[1] == 1 + 2 * (28 + 1) for ax in fig.axes)  # 2 samples a class


def test_arithmetic_starts_each_row_with_its_input(vae_run, figures):
    run = open_run(vae_run)
    test = run.dataset().test
    mask = test.labels == 1
    examples = test.images[~mask][:2]
    plots.plot_arithmetic(run.model, run.guide, test.images, mask, examples, "unused.png", "1")
    fig = figures[0]
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()][:2] == ["input", "alpha=-2"]
    first_cell = torch.as_tensor(fig.axes[0].images[0].get_array()[1:29, 1:29].data)
    assert torch.allclose(first_cell.float(), examples[0, 0].float(), atol=1e-6)


def test_manifold_has_coordinate_ticks(idx_dir, tmp_path, figures):
    run = open_run(_train(idx_dir, tmp_path / "two", "--latent-dim", "2"))
    plots.plot_manifold(run.model, "unused.png", n=20)
    ax = figures[-1].axes[0]
    x = [float(t.get_text().replace("\N{MINUS SIGN}", "-")) for t in ax.get_xticklabels()]
    y = [float(t.get_text().replace("\N{MINUS SIGN}", "-")) for t in ax.get_yticklabels()]
    assert x[0] == pytest.approx(-1.64, abs=0.01) and x[-1] == pytest.approx(1.64, abs=0.01)
    assert y[0] == pytest.approx(1.64, abs=0.01) and y == sorted(y, reverse=True)  # z2 grows upwards


def test_attribute_and_class_names_match_in_any_case():
    images = torch.rand(4, 1, 4, 4)
    split = Split(images, torch.tensor([0, 1, 1, 0]), torch.tensor([[1], [0], [1], [0]]).bool())
    data = ImageDataset("toy", split, split, split, class_names=("Cat", "Dog"), attribute_names=("Smiling",))
    mask, name = _attribute_mask(data, split, "smiling", None)
    assert name == "Smiling" and mask.tolist() == [True, False, True, False]
    mask, name = _attribute_mask(data, split, "DOG", None)
    assert name == "Dog" and mask.tolist() == [False, True, True, False]


def test_a_label_out_of_range_says_how_many_classes_there_are(cvae_run, tmp_path, capsys):
    assert main(["sample", str(cvae_run), "--label", "12", "-o", str(tmp_path / "s.png")]) == 2
    assert "which has 4 classes: give a number from 0 to 3" in _one_sentence(capsys)


def test_prior_check_under_a_learned_prior_compares_with_the_prior_not_n01(figures):
    """A mixture prior far from N(0, 1): the histograms' reference is drawn from the prior, and
    the bars are the activity Var_x E[z_d | x] (dimension 1's mean does not move with x)."""
    from pyro_vae.models.priors import MixtureOfGaussiansPrior

    torch.manual_seed(0)
    prior = MixtureOfGaussiansPrior(2, 3)

    class Guide:
        def encode(self, x):
            loc = torch.cat([3.0 * x[:, :1], torch.full_like(x[:, :1], 2.5)], 1)
            return loc, torch.full_like(loc, 0.3)

    plots.plot_prior_check(Guide(), torch.randn(400, 1), "unused.png", prior=prior)
    fig = figures[0]
    title = fig._suptitle.get_text()
    assert "the learned prior" in title and "1 of 2 dimensions inactive" in title
    assert "N(0, 1)" not in title
    hist = fig.axes[0]
    assert [t.get_text() for t in hist.get_legend().get_texts()] == ["q(z) aggregate", "p(z) (learned prior)"]
    bars = fig.axes[-1]
    heights = sorted(p.get_height() for p in bars.patches)
    assert heights[0] < plots.INACTIVE_KL < heights[1]
    assert abs(heights[1] - 9.0) < 1.5  # Var(3 x) for x ~ N(0, 1)


@pytest.mark.parametrize("argv", [["train", "--seed", "-1"], ["train", "--seed", "4294967296"],
                                  ["evaluate", "RUN", "--seed", "-1"], ["evaluate", "RUN", "--k", "2", "--seed", "-1"],
                                  ["sample", "RUN", "--seed", "-3", "-o", "OUT"],
                                  ["plot", "RUN", "--kind", "samples", "--seed", "-1", "-o", "OUT"]])
def test_a_seed_outside_what_numpy_accepts_is_one_sentence(vae_run, tmp_path, capsys, argv):
    """A negative or too large seed once ended in NumPy's traceback (exit 1), deep in training or evaluation."""
    argv = [str(vae_run) if a == "RUN" else str(tmp_path / "out.png") if a == "OUT" else a for a in argv]
    if argv[0] == "train":
        argv += ["--run-dir", str(tmp_path / "run")]
    before = _files(vae_run)
    assert main(argv) == 2
    assert "must be between 0 and 4294967295" in _one_sentence(capsys)
    assert _files(vae_run) == before and not (tmp_path / "run").exists() and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("model,bound", [("cvae", "valid ELBO of log p(x | y) "), ("quadrant", "valid ELBO of log p(x_m | x_g) "),
                                         ("vae", "valid ELBO ")])
def test_the_epoch_line_names_what_a_conditional_elbo_bounds(idx_dir, tmp_path, capsys, model, bound):
    """The CVAE's and quadrant model's epoch lines said "valid ELBO" as a VAE's do, though they bound a conditional."""
    _train(idx_dir, tmp_path / model, "--model", model, "--figures", "false")
    epoch_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch   1"))
    assert bound in epoch_line and (model != "vae" or " of log p" not in epoch_line)
