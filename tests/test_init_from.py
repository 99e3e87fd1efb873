"""--init-from RUN_DIR: a new run starts from another run's best parameters (e.g. a VAE
fine-tuned with the IWAE bound), with a fresh optimizer; refused where the parameters
cannot correspond."""

import json

import pytest
import torch

from pyro_vae.cli import main
from pyro_vae.runs import open_run

TINY = ["--dataset", "idx", "--latent-dim", "4", "--hidden-dims", "32", "--batch-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def source(idx_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("init-from") / "source"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--epochs", "2", *TINY]) == 0
    return run


def _parameters(run_dir, which="best") -> dict:
    run = open_run(run_dir, which)
    return {**{f"model.{k}": v for k, v in run.model.state_dict().items()},
            **{f"guide.{k}": v for k, v in run.guide.state_dict().items()}}


def test_the_new_run_starts_from_the_source_runs_best_parameters(source, idx_dir, tmp_path):
    # With a learning rate of 1e-9, Adam moves each parameter by at most about 1e-9 per step:
    # after one epoch the run's parameters are the source's best to 1e-6, and not the fresh
    # initialisation the same command without --init-from gives (the same seed: the source's
    # own starting point, which its two epochs moved by a few hundredths).
    tuned, fresh = tmp_path / "tuned", tmp_path / "fresh"
    common = ["train", "--data-dir", str(idx_dir), "--epochs", "1", "--learning-rate", "1e-9",
              "--objective", "iwae-dreg", "--k", "3", *TINY]
    assert main([*common, "--run-dir", str(tuned), "--init-from", str(source)]) == 0
    assert main([*common, "--run-dir", str(fresh)]) == 0
    start, after, untouched = _parameters(source), _parameters(tuned, "last"), _parameters(fresh, "last")
    assert start.keys() == after.keys()
    for name in start:
        assert torch.allclose(after[name], start[name], atol=1e-6), name
    assert max((untouched[n] - start[n]).abs().max().item() for n in start) > 0.01
    summary = json.loads((tuned / "summary.json").read_text())
    best = json.loads((source / "summary.json").read_text())["best_epoch"]
    assert summary["init_from"]["run"] == str(source) and summary["init_from"]["epoch"] == best
    assert "init_from" not in json.loads((fresh / "summary.json").read_text())
    # the optimizer starts afresh: the run counts its own epochs and steps from zero
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1

    # a resumed fine-tuned run keeps its own parameters, and still says where they began
    assert main(["train", "--resume", str(tuned), "--epochs", "2", "--no-progress"]) == 0
    resumed = json.loads((tuned / "summary.json").read_text())
    assert resumed["epochs"] == 2 and resumed["init_from"] == summary["init_from"]


@pytest.mark.parametrize("flags,message", [
    (["--latent-dim", "5"], "has --latent-dim 4, this run 5"),
    (["--hidden-dims", "16"], "has --hidden-dims 32, this run 16"),
])
def test_a_source_with_other_model_options_is_refused_before_anything_is_written(source, idx_dir, tmp_path,
                                                                                 capsys, flags, message):
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--epochs", "1", *TINY, *flags,
            "--init-from", str(source)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "give the same [model] options" in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


def test_a_source_that_is_not_a_run_is_refused(idx_dir, tmp_path, capsys):
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(tmp_path / "run"), "--epochs", "1", *TINY,
                 "--init-from", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_may_add_a_vampprior_and_a_flow_to_its_source(source, idx_dir, tmp_path):
    # The source is a VAE with the standard prior and no flow. The new run adds a VampPrior
    # whose pseudo-inputs start as training images (--pseudo-init data) and an IAF step: the
    # networks they share start at the source's best, the added parameters start afresh and
    # are named in the summary.
    from pyro_vae.data.datasets import as_tensor, load_dataset

    run = tmp_path / "vamp"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--epochs", "1", "--learning-rate", "1e-9",
                 *TINY, "--prior", "vamp", "--pseudo-inputs", "6", "--pseudo-init", "data", "--flow", "iaf",
                 "--flow-steps", "1", "--init-from", str(source)]) == 0
    start, after = _parameters(source), _parameters(run, "last")
    added = sorted(set(after) - set(start))
    assert added and all(name.startswith(("model.latent_prior.", "guide.steps.")) for name in added)
    assert "model.latent_prior.raw_pseudo_inputs" in added
    for name in start:
        assert torch.allclose(after[name], start[name], atol=1e-6), name
    summary = json.loads((run / "summary.json").read_text())
    assert sorted(summary["init_from"]["fresh_parameters"]) == added

    # each pseudo-input is one of the training images, six distinct ones
    train = as_tensor(load_dataset("idx", str(idx_dir), binarize="dynamic").train.images).flatten(1)
    pseudo = after["model.latent_prior.raw_pseudo_inputs"].flatten(1)
    distance = (pseudo[:, None] - train[None]).abs().amax(dim=-1)  # [6, N], the largest pixel difference
    nearest = distance.min(dim=1)
    assert nearest.values.max() < 1e-4 and len(set(nearest.indices.tolist())) == 6


def test_a_vampprior_source_keeps_its_learned_pseudo_inputs(source, idx_dir, tmp_path, capsys):
    # --pseudo-init data starts fresh pseudo-inputs at training images; a run fine-tuning a
    # VampPrior run inherits the learned ones, as every other parameter, so --pseudo-init data
    # would do nothing there and is refused (before anything is written).
    vamp, tuned = tmp_path / "vamp", tmp_path / "tuned"
    prior = ["--prior", "vamp", "--pseudo-inputs", "4"]
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(vamp), "--epochs", "1", "--learning-rate",
                 "1e-2", *TINY, *prior, "--pseudo-init", "data", "--init-from", str(source)]) == 0
    capsys.readouterr()
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(tuned), "--epochs", "1", *TINY, *prior,
                 "--pseudo-init", "data", "--init-from", str(vamp)]) == 2
    err = capsys.readouterr().err
    assert "--pseudo-init data has no effect" in err and len(err.strip().splitlines()) == 1
    assert not tuned.exists()
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(tuned), "--epochs", "1", "--learning-rate",
                 "1e-9", *TINY, *prior, "--init-from", str(vamp), "--seed", "1"]) == 0
    learned, after = _parameters(vamp), _parameters(tuned, "last")
    assert learned.keys() == after.keys()
    for name in learned:
        assert torch.allclose(after[name], learned[name], atol=1e-6), name
    assert json.loads((tuned / "summary.json").read_text())["init_from"]["fresh_parameters"] == []


def test_a_run_that_adds_iaf_steps_starts_with_its_sources_posterior(source, idx_dir, tmp_path, capsys):
    # IAF steps start at the identity, so the extended run's q(z | x) is the source's best
    # q(z | x) at every z (a random start would move log q by nats and undo the warm start).
    from pyro_vae.data.datasets import as_tensor

    run = tmp_path / "iaf"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--epochs", "1", "--learning-rate", "1e-9",
                 *TINY, "--flow", "iaf", "--flow-steps", "2", "--init-from", str(source)]) == 0
    assert "about 20x" not in capsys.readouterr().out  # the DReG note is for --objective iwae-dreg only
    before, after = open_run(source, "best"), open_run(run, "last")
    x = as_tensor(before.dataset().test.images[:8])
    torch.manual_seed(0)
    with torch.no_grad():
        q_before = torch.distributions.Independent(torch.distributions.Normal(*before.guide.encode(x)), 1)
        q_after = after.guide.distribution(x)
        z = q_before.sample((3,))
        torch.testing.assert_close(q_after.log_prob(z), q_before.log_prob(z), rtol=0, atol=1e-4)


@pytest.mark.parametrize("extended,second,words", [
    # a run may add a prior or flow to its source, not drop one
    (["--flow", "householder", "--flow-steps", "1"], [], ["guide parameter 'steps.0", "not drop one"]),
    # a prior of another size than the source's: the size to give is named (it said "give a run on the same data set")
    (["--prior", "vamp", "--pseudo-inputs", "4"], ["--prior", "vamp", "--pseudo-inputs", "6"],
     ["has --pseudo-inputs 4, this run 6: give --pseudo-inputs 4"]),
])
def test_a_run_from_an_extended_source_must_keep_its_parts(source, idx_dir, tmp_path, capsys, extended, second, words):
    first = tmp_path / "extended"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(first), "--epochs", "1", *TINY, *extended,
                 "--init-from", str(source)]) == 0
    capsys.readouterr()
    run = tmp_path / "second"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--epochs", "1", *TINY, *second,
                 "--init-from", str(first)]) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words) and len(err.strip().splitlines()) == 1, err
    assert not run.exists()


@pytest.mark.parametrize("flags,message", [
    (["--prior", "vamp", "--pseudo-inputs", "5000", "--pseudo-init", "data"], "more than the"),
    (["--pseudo-init", "data"], "--pseudo-init data has no effect with --prior standard"),
])
def test_pseudo_inputs_from_data_are_refused_where_they_cannot_be(idx_dir, tmp_path, capsys, flags, message):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(idx_dir), "--run-dir", str(run), "--epochs", "1", *TINY, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


@pytest.mark.parametrize("model", ["m2", "adgm"])
def test_a_semi_supervised_run_is_not_started_from_another_run(idx_dir, tmp_path, capsys, model):
    """--model m2 --labels 10 --init-from a run trained on 100 labels (or another --seed's 10)
    trained, and summary.json reported the test accuracy "with 10 labels" of a classifier that
    had learned from the source's labelled images, beside a supervised baseline trained afresh
    for this run's steps alone. It is refused before anything is written."""
    source = tmp_path / "source"
    labelled = ["--model", model, "--data-dir", str(idx_dir), "--epochs", "1", "--figures", "false",
                "--train-limit", "300", *TINY]
    assert main(["train", *labelled, "--labels", "100", "--run-dir", str(source)]) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["train", *labelled, "--labels", "10", "--run-dir", str(run), "--init-from", str(source)]) == 2
    err = capsys.readouterr().err
    assert f"--init-from cannot start a --model {model} run: its summary reports the test accuracy" in err, err
    assert not run.exists()
