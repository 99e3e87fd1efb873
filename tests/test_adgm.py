"""The auxiliary deep generative model (Maaløe et al. 2016): its two bounds against the same
draws computed by hand, the classification term, and the command line."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from pyro.infer import TraceEnum_ELBO
from torch.nn import functional as F

from pyro_vae.build import build_vae
from pyro_vae.config import Config, ModelConfig
from pyro_vae.errors import ConfigError
from pyro_vae.inference.semisupervised import SemiSupervisedLoss

CLASSES, LATENT, AUX = 3, 2, 3


def build_adgm():
    torch.manual_seed(0)
    return build_vae(ModelConfig(model="adgm", latent_dim=LATENT, aux_dim=AUX, hidden_dims=[16]), (1, 6, 6), CLASSES)


def normal_log_density(value, loc, scale):
    """sum_d log N(value_d; loc_d, scale_d^2), written out."""
    return (-0.5 * ((value - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def log_joint_by_hand(model, x, y, z, a):
    """log p(x, y, z, a) = log 1/K + log N(z; 0, I) + log Bernoulli(x; decoder(z, y)) + log p(a | x, y, z)."""
    logits = model.decoder_output(z, y)
    log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum((-3, -2, -1))
    loc, scale = model.aux_decoder(x, torch.cat([F.one_hot(y, CLASSES).float(), z], -1))
    return (math.log(1 / CLASSES) + normal_log_density(z, torch.zeros_like(z), torch.ones_like(z)) + log_px
            + normal_log_density(a, loc, scale))


def test_unlabelled_bound_is_the_explicit_sum_over_classes_for_the_same_draws():
    """-U(x) = -sum_b [ sum_y q(y|a,x) (log p(x,y,z_y,a) - log q(z_y|a,y,x) - log q(y|a,x)) - log q(a|x) ]
    with a ~ q(a|x) and one z_y ~ q(z|a,y,x) per class, read from the guide run under the same seed."""
    model, guide = build_adgm()
    x = torch.bernoulli(torch.full((4, 1, 6, 6), 0.4))
    pyro.set_rng_seed(3)
    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(3)  # the same draws: TraceEnum_ELBO enumerates from the dimension left of the plate
    trace = poutine.trace(poutine.enum(guide, first_available_dim=-2)).get_trace(x)
    a, z = trace.nodes["a"]["value"], trace.nodes["z"]["value"]  # [4, A], [K, 4, L]: one z per class
    assert z.shape == (CLASSES, 4, LATENT)
    with torch.no_grad():
        a_loc, a_scale = guide.aux_encoder(x)
        log_qa = normal_log_density(a, a_loc, a_scale)  # [4]
        log_qy = guide.classifier(x, a).log_softmax(-1)  # [4, K]
        bound = -log_qa
        for c in range(CLASSES):
            y = torch.full((4,), c)
            z_loc, z_scale = guide.encoder(x, torch.cat([a, F.one_hot(y, CLASSES).float()], -1))
            log_qz = normal_log_density(z[c], z_loc, z_scale)
            bound = bound + log_qy[:, c].exp() * (log_joint_by_hand(model, x, y, z[c], a) - log_qz - log_qy[:, c])
    assert torch.allclose(loss.detach(), -bound.sum(), atol=1e-4, rtol=1e-5)


def test_labelled_loss_is_the_elbo_with_y_observed_plus_alpha_times_the_cross_entropy_at_a_drawn_a():
    """-L(x, y) + alpha * (-log q(y | a', x)): the ELBO of p(x, y, z, a) under q(a|x) q(z|a,y,x)
    (no y site in the guide), then a fresh a' ~ q(a|x) for the classification term."""
    model, guide = build_adgm()
    x, y = torch.bernoulli(torch.full((5, 1, 6, 6), 0.4)), torch.tensor([0, 1, 2, 0, 1])
    pyro.set_rng_seed(5)
    loss = SemiSupervisedLoss(alpha=7.0).labelled(model, guide, x, y)
    pyro.set_rng_seed(5)
    trace = poutine.trace(guide).get_trace(x, y)
    assert "y" not in trace.nodes  # y is observed: only a and z are drawn
    a, z = trace.nodes["a"]["value"], trace.nodes["z"]["value"]
    with torch.no_grad():
        a_loc, a_scale = guide.aux_encoder(x)
        redrawn = dist.Normal(a_loc, a_scale).rsample()  # the next draws of the same stream
        z_loc, z_scale = guide.encoder(x, torch.cat([a, F.one_hot(y, CLASSES).float()], -1))
        elbo = (log_joint_by_hand(model, x, y, z, a) - normal_log_density(a, a_loc, a_scale)
                - normal_log_density(z, z_loc, z_scale))
        cross_entropy = -guide.classifier(x, redrawn).log_softmax(-1)[torch.arange(5), y]
        by_hand = -elbo.sum() + 7.0 * cross_entropy.sum()
    assert torch.allclose(loss.detach(), by_hand, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(guide.sample_logits(x), guide.sample_logits(x))  # a is drawn, not fixed
    mean_logits = guide.classifier(x, a_loc)  # prediction: q(y | a, x) at the mean of q(a | x)
    assert torch.equal(guide.classify(x), mean_logits)


def test_the_auxiliary_variable_sits_in_model_and_guide_under_the_same_names():
    model, guide = build_adgm()
    x = torch.bernoulli(torch.full((4, 1, 6, 6), 0.4))
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    latent = {n for n, s in model_trace.nodes.items()
              if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)}
    guided = {n for n, s in guide_trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)}
    assert latent == guided == {"y", "z", "a"}
    assert model_trace.nodes["a"]["fn"].event_shape == (AUX,) == guide_trace.nodes["a"]["fn"].event_shape
    assert model.aux_decoder.body[1][0].in_features == 36 + CLASSES + LATENT  # p(a | x, y, z) reads all three
    assert guide.encoder.body[1][0].in_features == 36 + AUX + CLASSES  # q(z | a, y, x)


@pytest.mark.parametrize("options, message", [
    (dict(model="m2", aux_dim=10), "--aux-dim 10 has no effect with --model m2"),
    (dict(model="adgm", network="conv"), "--model adgm is built from MLPs"),
    (dict(model="adgm", label_at_encoder_input=True), "--label-at-encoder-input true has no effect with --model adgm"),
])
def test_options_the_adgm_does_not_use_are_refused(options, message):
    config = Config()
    config.model = ModelConfig(**options)
    config.data.labels = 100
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_adgm_from_the_cli_shares_m2s_baseline(idx_dir, tmp_path, capsys):
    """Trained and scored from the command line; its supervised baseline is M2's (same pixel
    classifier, initialised alike, same labels and budget), so the two runs' baselines agree."""
    from pyro_vae.cli import main

    common = ["--labels", "8", "--dataset", "idx", "--data-dir", str(idx_dir), "--latent-dim", "2",
              "--hidden-dims", "16", "--epochs", "1", "--batch-size", "200", "--train-limit", "400", "--no-progress"]
    assert main(["train", "--model", "adgm", "--aux-dim", "4", "--run-dir", str(tmp_path / "adgm"), *common]) == 0
    assert main(["train", "--model", "m2", "--run-dir", str(tmp_path / "m2"), *common]) == 0
    adgm = json.loads((tmp_path / "adgm" / "summary.json").read_text())
    m2 = json.loads((tmp_path / "m2" / "summary.json").read_text())
    assert adgm["baseline_test_accuracy"] == m2["baseline_test_accuracy"]
    assert adgm["baseline_valid_accuracy"] == m2["baseline_valid_accuracy"]
    assert main(["evaluate", str(tmp_path / "adgm"), "--k", "4", "--limit", "10"]) == 0
    loglik = json.loads((tmp_path / "adgm" / "loglik.json").read_text())
    assert loglik["examples"] == 10 and loglik["log_likelihood_mean"] < 0  # log p(x), y summed out
    capsys.readouterr()
    assert main(["train", "--model", "adgm", "--dataset", "idx", "--data-dir", str(idx_dir),
                 "--run-dir", str(tmp_path / "x")]) == 2
    assert "give their number with --labels N" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_m2s_conv_classifier_is_also_its_baselines(idx_dir, tmp_path, monkeypatch):
    """--classifier-network conv with MLP encoder and decoder: the conv options take effect (not
    refused), q(y | x) is convolutional, and the supervised baseline trains that same network."""
    from pyro_vae import runs
    from pyro_vae.cli import main

    baselines = []
    tuned = runs.tuned_supervised_baseline

    def recording(make_classifier, *args, **kwargs):
        baselines.append(make_classifier())
        schedules.append((kwargs["lr_decay"], kwargs["clip_norm"]))
        return tuned(make_classifier, *args, **kwargs)

    schedules = []
    monkeypatch.setattr(runs, "tuned_supervised_baseline", recording)
    run = tmp_path / "m2conv"
    assert main(["train", "--model", "m2", "--classifier-network", "conv", "--conv-channels", "4,8", "--labels", "8",
                 "--dataset", "idx", "--data-dir", str(idx_dir), "--latent-dim", "2", "--hidden-dims", "16",
                 "--epochs", "1", "--batch-size", "200", "--train-limit", "400", "--no-progress",
                 "--lr-decay", "0.9", "--clip-norm", "5", "--run-dir", str(run)]) == 0
    assert schedules == [(0.9, 5.0)]  # M2's learning-rate decay and clipping
    trained = runs.open_run(run).guide.classifier
    assert [type(m).__name__ for m in baselines[0].modules()] == [type(m).__name__ for m in trained.modules()]
    convolutions = [m for m in trained.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convolutions] == [4, 8]
    assert "baseline_test_accuracy" in json.loads((run / "summary.json").read_text())


def test_label_fidelity_of_an_m1m2_run_decodes_through_m1(idx_dir, tmp_path, capsys):
    """M1+M2 is judged on images: decode(z, y) = M1's mean image at the unstandardized code
    M2 decodes; encode_style(x, y) = q(z_2 | scaled M1 code of x, y)'s mean."""
    from pyro_vae.cli import main
    from pyro_vae.runs import label_generator
    from pyro_vae.inference.codes import CodeScaler
    from pyro_vae.runs import open_run

    common = ["--dataset", "idx", "--data-dir", str(idx_dir), "--hidden-dims", "16", "--no-progress"]
    m1, stacked = tmp_path / "m1", tmp_path / "m1m2"
    # a few short epochs, so that some of M1's units are active (else no code to stack on)
    assert main(["train", "--model", "vae", "--latent-dim", "4", "--epochs", "4", "--batch-size", "32",
                 "--run-dir", str(m1), *common]) == 0
    assert main(["train", "--model", "m1m2", "--m1-run", str(m1), "--labels", "8", "--latent-dim", "2",
                 "--epochs", "1", "--run-dir", str(stacked), *common]) == 0
    run, vae = open_run(stacked), open_run(m1)
    scaler = CodeScaler.from_dict(json.loads((stacked / "m1_codes.json").read_text()))
    generator = label_generator(run)
    z, y = torch.randn(6, 2), torch.tensor([0, 1, 2, 3, 0, 1])
    x = run.dataset().test.images[:6]
    with torch.no_grad():
        code = run.model.decode_mean(z, y).flatten(-3)
        assert torch.allclose(generator.decode(z, y), vae.model.decode_mean(scaler.invert(code)))
        m1_codes = scaler(vae.guide.encoder(x)[0])[:, None, None, :]
        assert torch.allclose(generator.encode_style(x, y), run.guide.encode(m1_codes, y)[0])
    capsys.readouterr()
    assert main(["evaluate", str(stacked), "--label-fidelity", "--classifier-cache", str(tmp_path / "cache"),
                 "--fidelity-samples", "3", "--fidelity-images", "8"]) == 0
    result = json.loads((stacked / "label_fidelity.json").read_text())
    assert result["prior"]["images"] == 3 * 4 and result["style_grid"]["images"] == 8 * 4  # the four classes
