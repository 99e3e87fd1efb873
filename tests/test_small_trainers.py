"""Training paths the mutation run found without a fast test (docs/testing.md, "Mutation
testing"), each on tiny synthetic data in about a second, against closed forms or hand
computations: the patience count, the valid-loglik selection's rows, M2's trainer,
function-style programs, a log-likelihood estimate's summary."""

from __future__ import annotations

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.build import build_vae
from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import TrainingError
from pyro_vae.inference.semisupervised import SemiSupervisedTrainer, classification_accuracy
from pyro_vae.inference.train import TrainSettings, epochs_since_best

SHAPE = (1, 6, 6)
CLASSES = 3


@pytest.mark.parametrize("criteria,since", [([], 0), ([-3.0], 0), ([-3.0, -2.0, -2.5, -4.0], 2),
                                            ([-1.0, -2.0, -1.0, -3.0], 3), ([-5.0, -4.0, -3.0], 0)])
def test_epochs_since_best_counts_from_the_first_of_equal_bests(criteria, since):
    assert epochs_since_best(criteria) == since


# -- M2's trainer ----------------------------------------------------------------------

def _labelled_split(n: int, seed: int, grey: bool = False, shift: int = 0) -> Split:
    """``n`` images of three classes (class c lights row c of the image; the other pixels
    random), labels ``(class + shift) % 3``: ``shift`` != 0 makes every label wrong for a
    classifier that reads the lit row. Binary unless ``grey`` (then the pixels are 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.arange(n) % CLASSES
    images = (torch.rand((n,) + SHAPE, generator=generator) < 0.3).float()
    images[torch.arange(n), 0, classes] = 1.0
    if grey:
        images = torch.full_like(images, 0.5)
    return Split(images, (classes + shift) % CLASSES)


def _m2_data(grey: bool = False, binarize: str = "none") -> ImageDataset:
    return ImageDataset("m2-toy", _labelled_split(48, 1, grey), _labelled_split(30, 2, grey),
                        _labelled_split(30, 3, grey, shift=1), binarize=binarize)


class _LossSpy:
    """SemiSupervisedLoss, recording each call's images and labels and its value."""

    def __init__(self, loss, nan_at: int | None = None):
        self.loss, self.unlabelled_calls, self.labelled_calls, self.nan_at = loss, [], [], nan_at
        self.alpha = loss.alpha

    def unlabelled(self, model, guide, x):
        value = self.loss.unlabelled(model, guide, x)
        self.unlabelled_calls.append((x.clone(), value.item()))
        if self.nan_at == len(self.unlabelled_calls):
            value = value * math.nan
        return value

    def labelled(self, model, guide, x, y):
        value = self.loss.labelled(model, guide, x, y)
        self.labelled_calls.append((x.clone(), y.clone(), value.item()))
        return value


def _m2_trainer(data, epochs=1, labelled=(0, 4, 8, 13, 17, 23), alpha=5.0, nan_at=None, **settings):
    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(model="m2", latent_dim=2, hidden_dims=[16]), SHAPE, num_classes=CLASSES)
    trainer = SemiSupervisedTrainer(model, guide, data, torch.tensor(labelled),
                                    TrainSettings(epochs=epochs, batch_size=16, learning_rate=settings.pop("lr", 1e-2),
                                                  **settings),
                                    alpha=alpha, progress=False, log=lambda line: None)
    trainer.objective = spy = _LossSpy(trainer.objective, nan_at)
    return trainer, spy


def _rows(batch: torch.Tensor, images: torch.Tensor) -> list[int]:
    """The index in ``images`` of each image of ``batch`` (the images are distinct)."""
    flat = images.reshape(len(images), -1)
    return [int((flat == row).all(1).nonzero()[0]) for row in batch.reshape(len(batch), -1)]


def test_m2_labelled_weight_counts_each_labelled_example_once_per_epoch():
    """(N_l / B_l) / (N / B): 6 labels in batches of 6, 48 images in batches of 16 -> 1/3;
    40 labels in batches of 16 -> (40 / 16) / 3."""
    data = _m2_data()
    assert _m2_trainer(data)[0].labelled_weight == pytest.approx(1 / 3, rel=1e-12)
    assert _m2_trainer(data, labelled=range(40))[0].labelled_weight == pytest.approx(40 / 16 / 3, rel=1e-12)
    model, guide = build_vae(ModelConfig(model="m2", latent_dim=2, hidden_dims=[16]), SHAPE, num_classes=CLASSES)
    given = SemiSupervisedTrainer(model, guide, data, torch.arange(6), TrainSettings(epochs=1, batch_size=16),
                                  alpha=7.0, labelled_weight=2.5, progress=False)
    assert given.labelled_weight == 2.5 and given.objective.alpha == 7.0


def test_m2s_short_last_batch_weighs_its_labelled_batch_down_alike():
    """50 images in batches of 16 end with a batch of 2, which was paired with a labelled batch
    at full weight: an epoch counted its labelled terms 4 x 16 / 50 = 1.28 times and that step was
    no estimate of the objective (labelled over unlabelled 8 times too heavy). The labelled loss is
    now weighted by len(x) / B on such a step, so an epoch counts each labelled example once."""
    data = ImageDataset("m2-toy", _labelled_split(50, 1), _labelled_split(30, 2), _labelled_split(30, 3), binarize="none")
    trainer, _ = _m2_trainer(data)
    parameter = next(trainer.model.parameters())
    calls = []

    class Counting:  # each labelled image adds 1 to the loss, the unlabelled ones nothing
        alpha = 5.0

        def unlabelled(self, model, guide, x):
            calls.append(len(x))
            return parameter.sum() * 0

        def labelled(self, model, guide, x, y):
            return parameter.sum() * 0 + float(len(y))

    trainer.objective = Counting()
    bound = trainer.train_epoch()
    assert calls == [16, 16, 16, 2]
    # N_l = 6 labelled examples, each counted once over the epoch: minus 6 nats over the 50 images
    assert bound == pytest.approx(-6 / 50, rel=1e-6)


def test_an_m2_epoch_sees_every_image_once_and_labelled_pairs_from_the_label_set():
    data = _m2_data()
    trainer, spy = _m2_trainer(data)
    bound = trainer.train_epoch()
    images, labels = data.train.images, data.train.labels
    assert len(spy.unlabelled_calls) == len(spy.labelled_calls) == 3 == trainer.state.step
    seen = [row for x, _ in spy.unlabelled_calls for row in _rows(x, images)]
    assert sorted(seen) == list(range(48))  # a permutation of the training split
    for x, y, _ in spy.labelled_calls:
        rows = _rows(x, images)
        assert len(rows) == 6 and set(rows) <= {0, 4, 8, 13, 17, 23}  # min(B, N_l) labelled images
        assert y.tolist() == labels[rows].tolist()  # with their own labels
    # The epoch's bound: minus the weighted sum of both terms over the steps, per image.
    total = sum(u for _, u in spy.unlabelled_calls) + sum(l for *_, l in spy.labelled_calls) / 3
    assert bound == pytest.approx(-total / 48, rel=1e-6)


def test_m2_selects_by_validation_accuracy_and_scores_the_test_split_with_the_best_epoch():
    """The validation labels are made all wrong after epoch 1, so epoch 2's accuracy drops and
    epoch 1 stays the best; the test split's labels differ from the validation split's."""
    data = _m2_data()
    trainer, _ = _m2_trainer(data, epochs=2, lr=5e-2)
    accuracies, snapshots, lines = [], [], []
    trainer.log = lines.append

    def record(trainer, row):
        accuracies.append(classification_accuracy(trainer.guide, data.valid.images, data.valid.labels))
        snapshots.append(trainer.parameter_snapshot())
        data.valid.labels.copy_(torch.full_like(data.valid.labels, 2))  # epoch 2 validates on other labels

    trainer.on_epoch = record
    trainer.fit()
    history = trainer.state.history
    assert [row["valid_accuracy"] for row in history] == accuracies
    assert trainer.selection_key() == "valid_accuracy" and trainer.state.best_epoch == 1
    alpha = trainer.alpha
    assert alpha and "train bound" not in lines[0]
    assert lines[0].startswith(f"epoch   1  train M2 objective (not a bound: it adds alpha={alpha:g} x log q(y | x)) ")
    assert f"valid accuracy {100 * accuracies[0]:.2f} ± " in lines[0]  # in percent, as the test accuracy
    p, n = accuracies[0], len(data.valid)  # the binomial standard error over the validation images
    assert f"± {100 * (p * (1 - p) / n) ** 0.5:.2f}% (selects)" in lines[0]
    assert history[0]["valid_accuracy_stderr"] == pytest.approx((p * (1 - p) / n) ** 0.5)
    assert lines[0].endswith("*best") and not lines[1].endswith("*best")
    test = trainer.test_accuracy()
    for part, module in (("model", trainer.model), ("guide", trainer.guide)):
        for name, tensor in module.state_dict().items():
            assert torch.equal(tensor, snapshots[0][part][name]), name  # the best epoch's parameters
    assert test == classification_accuracy(trainer.guide, data.test.images, data.test.labels)
    assert test != classification_accuracy(trainer.guide, data.valid.images, _m2_data().valid.labels)


def test_m2_with_dynamic_binarization_trains_on_fresh_binary_draws():
    data = _m2_data(grey=True, binarize="dynamic")
    trainer, spy = _m2_trainer(data)
    trainer.train_epoch()
    for x in [x for x, _ in spy.unlabelled_calls] + [x for x, *_ in spy.labelled_calls]:
        assert set(x.unique().tolist()) == {0.0, 1.0}  # Bernoulli(0.5) draws, not the grey pixels
    first, second = spy.unlabelled_calls[0][0], spy.unlabelled_calls[1][0]
    assert not torch.equal(first, second)


def test_m2_clips_the_gradient_to_clip_norm():
    data = _m2_data()
    trainer, _ = _m2_trainer(data, clip_norm=0.25)
    norms, step = [], trainer.optimizer.step

    def spy_step(*args, **kwargs):
        norms.append(torch.cat([p.grad.reshape(-1) for p in trainer.parameters if p.grad is not None]).norm().item())
        return step(*args, **kwargs)

    trainer.optimizer.step = spy_step
    trainer.train_epoch()
    assert norms == pytest.approx([0.25] * 3, rel=1e-5)


def test_a_non_finite_m2_loss_stops_with_the_step_named():
    trainer, _ = _m2_trainer(_m2_data(), nan_at=2)
    before = {k: v.clone() for k, v in trainer.guide.state_dict().items()}
    with pytest.raises(TrainingError, match=r"the loss became nan at step 2;"):
        trainer.train_epoch()
    assert trainer.state.step == 1
    assert any(not torch.equal(v, before[k]) for k, v in trainer.guide.state_dict().items())  # step 1 was taken


# -- valid-loglik selection --------------------------------------------------------------

def _vae_trainer(data, epochs=1, **settings):
    from pyro_vae.inference.objectives import make_objective
    from pyro_vae.inference.train import Trainer

    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), SHAPE)
    return Trainer(model, guide, make_objective("analytic-kl"), data,
                   TrainSettings(epochs=epochs, batch_size=16, analytic_kl=True, **settings), progress=False,
                   log=lambda line: None)


@pytest.mark.parametrize("examples", [0, 7, 30, 31])
def test_valid_loglik_selection_scores_a_fixed_seeded_subset_of_validation_rows(examples):
    trainer = _vae_trainer(_m2_data(), selection="valid-loglik", selection_k=3, selection_examples=examples,
                           selection_seed=5)
    rows = trainer.selection_rows()
    if examples in (0, 30, 31):  # 0, or as many as there are: every validation image
        assert torch.equal(rows, torch.arange(30))
    else:
        want = torch.randperm(30, generator=torch.Generator().manual_seed(5))[:7].sort().values
        assert torch.equal(rows, want) and not torch.equal(rows, torch.arange(7))
    assert torch.equal(rows, trainer.selection_rows())  # drawn alike every epoch


def test_valid_loglik_is_the_estimate_on_those_rows_with_reseeded_draws_and_leaves_the_rng_alone():
    from pyro_vae.inference.loglik import importance_log_likelihood

    data = _m2_data()
    data.valid.labels = None
    trainer = _vae_trainer(data, selection="valid-loglik", selection_k=4, selection_examples=9, selection_seed=3)
    rows = trainer.selection_rows()
    torch.manual_seed(3)
    estimate = importance_log_likelihood(trainer.model, trainer.guide, data.valid.images[rows], k=4)
    want = estimate.mean
    torch.manual_seed(11)
    assert trainer.selection_log_likelihood() == pytest.approx(want, rel=1e-6)
    after = torch.rand(3)
    torch.manual_seed(11)
    assert torch.equal(after, torch.rand(3))  # its own draws come from a forked RNG
    metrics, criterion = trainer.validate()
    assert criterion == metrics["valid_loglik"] == pytest.approx(want, rel=1e-6)
    # its standard error over the 9 images scored: sd(log p(x_i)) / sqrt(9)
    per_image = estimate.log_likelihood.double()
    assert metrics["valid_loglik_stderr"] == pytest.approx(per_image.std().item() / 3, rel=1e-5)
    assert trainer.selection_key() == "valid_loglik"
    row = {"epoch": 1, "step": 3, "train_objective": -20.0, "seconds": 0.5, **metrics}
    error = metrics["valid_loglik_stderr"]
    assert f"  valid log p(x) K=4 {criterion:9.2f} ± {error:.2f} (selects)" in trainer.describe(row)
    assert "valid IWAE" not in trainer.describe(row)


@pytest.mark.parametrize("quantity,short", [("log p(x | y)", "log p(x | y)"),
                                            ("log p(x_m | x_g), x_g the top-left quadrant", "log p(x_m | x_g)")])
def test_the_selecting_estimate_is_named_by_its_quantity_as_the_validation_elbo_is(quantity, short):
    """A conditional VAE's epoch line read `valid ELBO of log p(x | y) ... valid log p(x) K=4 ...` (and
    quadrant completion's `valid IWAE bound K=5`): the selecting number is of the model's quantity."""
    trainer = _vae_trainer(_m2_data(), selection="valid-loglik", selection_k=4, quantity=quantity)
    row = {"epoch": 1, "step": 3, "train_objective": -20.0, "seconds": 0.5, "valid_elbo": -30.0,
           "valid_reconstruction": -29.0, "valid_kl": 1.0, "valid_loglik": -28.0, "valid_loglik_stderr": 0.5}
    line = trainer.describe(row)
    assert f"valid ELBO of {short}" in line and f"  valid {short} K=4    -28.00 ± 0.50 (selects)" in line, line
    trainer.settings.selection, trainer.settings.selection_k = "valid-iwae", 5
    row["valid_iwae"] = row.pop("valid_loglik")
    assert f"  valid IWAE bound of {short} K=5    -28.00 (selects)" in trainer.describe(row)


@pytest.mark.parametrize("settings,words", [
    ({}, "best validation ELBO"),
    ({"selection_k": 6}, "best validation IWAE bound (K=6)"),
    ({"selection": "valid-loglik", "selection_k": 8},
     "best validation log-likelihood by importance sampling (K=8, all validation images, seed 0)"),
    ({"selection": "valid-loglik", "selection_k": 8, "selection_examples": 50, "selection_seed": 4},
     "best validation log-likelihood by importance sampling (K=8, 50 fixed random validation images, seed 4)"),
])
def test_the_selection_rule_in_words(settings, words):
    assert TrainSettings(epochs=1, **settings).describe_selection() == words


@pytest.mark.parametrize("settings,key", [({}, "valid_elbo"), ({"selection_k": 3}, "valid_iwae"),
                                          ({"selection": "valid-loglik", "selection_k": 3}, "valid_loglik")])
def test_the_history_column_that_selects_and_stops(settings, key):
    trainer = _vae_trainer(_m2_data(), **settings)
    assert trainer.selection_key() == key
    metrics, criterion = trainer.validate()
    assert metrics[key] == criterion and metrics["kl_weight"] == 1.0
    line = trainer.describe({"epoch": 1, "step": 3, "train_objective": -20.0, "seconds": 0.5, **metrics})
    assert (f"valid IWAE bound K=3 {criterion:9.2f} ± " in line) == (key == "valid_iwae")
    assert {name for name in metrics if name.endswith("_stderr")} == {f"{name}_stderr" for name in (
        "valid_elbo", "valid_reconstruction", "valid_kl", key)}  # each mean over the images has one


def test_only_programs_that_say_they_need_labels_are_given_them():
    from pyro_vae.inference.train import label_kwargs

    labels = torch.tensor([2, 0, 1])
    def program(x):
        return None

    assert label_kwargs(program, labels) == {}  # no needs_labels attribute: no labels
    program.needs_labels = True
    assert label_kwargs(program, labels, slice(1, 3))["y"].tolist() == [0, 1]


# -- function-style programs ---------------------------------------------------------------

def _programs():
    """A linear-Gaussian model and guide written as Pyro's tutorials do: ``pyro.module`` for
    a shared torch layer and ``pyro.param`` for a positive scale."""
    pyro.clear_param_store()
    decoder = torch.nn.Linear(1, 2)
    shared = torch.nn.Linear(2, 1)

    def model(x):
        pyro.module("decoder", decoder)
        pyro.module("shared", shared)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([x.shape[0], 1]).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("shared", shared)
        scale = pyro.param("scale", torch.ones(1), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(shared(x), scale).to_event(1))

    return model, guide, decoder, shared


def test_function_style_programs_expose_their_param_store_entries():
    from pyro_vae.inference.programs import ParamStoreProgram, trainable_programs

    model, guide, decoder, shared = _programs()
    wrapped_model, wrapped_guide = trainable_programs(model, guide, torch.zeros(3, 2))
    assert isinstance(wrapped_model, ParamStoreProgram) and isinstance(wrapped_guide, ParamStoreProgram)
    # A parameter both register belongs to the guide alone.
    assert wrapped_guide.names == ["shared$$$weight", "shared$$$bias", "scale"]
    assert wrapped_model.names == ["decoder$$$weight", "decoder$$$bias"]
    assert wrapped_model.parameters()[0] is decoder.weight and wrapped_guide.parameters()[1] is shared.bias
    scale = pyro.get_param_store().get_param("scale").unconstrained()
    assert wrapped_guide.parameters()[2] is scale  # the unconstrained tensor an optimizer steps
    state = wrapped_guide.state_dict()
    assert torch.equal(state["scale"], torch.zeros(1))  # log 1: the unconstrained value
    state["scale"].fill_(5.0)
    assert torch.equal(scale, torch.zeros(1))  # a copy
    wrapped_guide.load_state_dict({**state, "shared$$$bias": torch.tensor([2.0])})
    assert scale.item() == 5.0 and shared.bias.item() == 2.0 and wrapped_guide.parameters()[2] is scale
    assert wrapped_guide.train() is wrapped_guide and wrapped_guide.eval() is wrapped_guide
    assert wrapped_guide.to("cpu") is wrapped_guide
    torch.manual_seed(0)
    assert wrapped_guide(torch.zeros(3, 2)) is None  # calls the program
    with pytest.raises(RuntimeError, match=r"missing \['scale'\], unexpected \['other'\]"):
        wrapped_guide.load_state_dict({"shared$$$weight": state["shared$$$weight"],
                                       "shared$$$bias": state["shared$$$bias"], "other": torch.zeros(1)})
    with pytest.raises(RuntimeError, match=r"size mismatch for scale: \(2,\) saved, \(1,\) here"):
        wrapped_guide.load_state_dict({**state, "scale": torch.zeros(2)})
    assert scale.item() == 5.0  # a refused state changes nothing it reached


def test_modules_are_kept_and_labels_are_passed_through():
    from pyro_vae.inference.programs import ParamStoreProgram, trainable_programs

    model, guide = build_vae(ModelConfig(latent_dim=2, hidden_dims=[8]), SHAPE)
    assert trainable_programs(model, guide, torch.zeros(1, *SHAPE)) == (model, guide)
    seen = []

    def labelled(x, y):
        seen.append(y)

    labelled.needs_labels = True
    program = ParamStoreProgram(labelled, ["a", "b", "a"])
    assert program.needs_labels and program.names == ["a", "b"]
    program(torch.zeros(1), y=torch.tensor([2]))
    assert seen[0].tolist() == [2]
    assert not ParamStoreProgram(lambda x: None, []).needs_labels


# -- a log-likelihood estimate's summary -------------------------------------------------------

def test_a_log_likelihood_summary_names_its_numbers_and_unit():
    from pyro_vae.inference.loglik import LogLikelihoodEstimate

    estimate = LogLikelihoodEstimate(torch.tensor([-1.0, -2.0, -6.0]), torch.tensor([4.0, 2.0, 9.0]), k=50,
                                     seconds=1.5)
    # mean -3; sample variance ((2^2 + 1^2 + 3^2) / 2) = 7; stderr sqrt(7 / 3)
    assert estimate.summary() == {"log_likelihood_mean": -3.0, "log_likelihood_stderr": pytest.approx(math.sqrt(7 / 3)),
                                  "unit": "nats per example", "kind": "not known (the model has no pyro-vae likelihood)",
                                  "quantity": None, "k": 50, "examples": 3, "ess_mean": 5.0,
                                  "ess_min": 2.0, "ess_of": 50, "seconds": 1.5}
    assert math.isnan(LogLikelihoodEstimate(torch.tensor([-4.0]), torch.tensor([1.0]), k=1).summary()["log_likelihood_stderr"])


def test_a_log_likelihood_estimate_says_what_kind_of_number_it_is_and_of_what():
    """The library's estimate printed a number without its kind (mass, density or bound) or its
    quantity; the CLI alone added them. Now the estimator names both, from the model's likelihood
    and the images as given."""
    from pyro_vae.build import build_vae
    from pyro_vae.config import ModelConfig
    from pyro_vae.inference import kinds
    from pyro_vae.inference.dequantize import dequantized_log_likelihood
    from pyro_vae.inference.loglik import importance_log_likelihood
    from pyro_vae.inference.semisupervised import marginal_log_likelihood

    torch.manual_seed(0)
    binary = torch.bernoulli(torch.full((3, 1, 4, 4), 0.4))
    grey = torch.randint(0, 256, (3, 1, 4, 4)) / 255.0

    def estimate(x, likelihood="bernoulli", model="vae", **inputs):
        vae, guide = build_vae(ModelConfig(model=model, likelihood=likelihood, latent_dim=2, hidden_dims=[8]),
                               (1, 4, 4), num_classes=3 if model in ("cvae", "m2") else 0)
        return (vae, guide), importance_log_likelihood(vae, guide, x, k=2, **inputs)

    _, bernoulli = estimate(binary)
    assert (bernoulli.kind, bernoulli.quantity) == (kinds.BINARY_MASS, "log p(x)")
    assert bernoulli.summary()["kind"] == kinds.BINARY_MASS and bernoulli.summary()["quantity"] == "log p(x)"
    (model, guide), gaussian = estimate(grey, "gaussian")
    assert gaussian.kind == kinds.DENSITY
    bound = dequantized_log_likelihood(lambda y: importance_log_likelihood(model, guide, y, k=2), grey)
    assert bound.kind == kinds.DEQUANTIZED_BOUND
    assert estimate(grey, "discretized-logistic")[1].kind == kinds.EIGHT_BIT_MASS
    assert estimate(binary, "discretized-logistic")[1].kind == kinds.BINARY_MASS
    labels = torch.tensor([0, 1, 2])
    assert estimate(binary, model="cvae", y=labels)[1].quantity == "log p(x | y)"
    (m2, m2_guide), joint = estimate(binary, model="m2", y=labels)
    assert (joint.kind, joint.quantity) == (kinds.BINARY_MASS, "log p(x, y)")
    marginal = marginal_log_likelihood(m2, m2_guide, binary, 3, k=2)
    assert (marginal.kind, marginal.quantity) == (kinds.BINARY_MASS, "log p(x)")


# -- the loop's bookkeeping, with the validation criterion scripted ------------------------------

def _scripted(trainer, criteria):
    """Make epoch e's validation criterion ``criteria[e - 1]`` (the other numbers fixed)."""
    def validate():
        value = criteria[trainer.state.epoch - 1]
        return {"valid_elbo": value, "valid_reconstruction": -1.0, "valid_kl": 0.5, "kl_weight": 1.0}, value

    trainer.validate = validate
    return trainer


def test_an_equal_criterion_is_no_improvement_and_only_improvements_are_marked():
    lines = []
    trainer = _scripted(_vae_trainer(_m2_data(), epochs=3), [-5.0, -5.0, -4.0])
    trainer.settings.epochs, trainer.log = 3, lines.append
    trainer.fit()
    assert trainer.state.best_epoch == 3 and trainer.state.best_valid_elbo == -4.0
    assert [line.endswith("  *best") for line in lines] == [True, False, True]
    assert lines[1].endswith(f"{trainer.state.history[1]['seconds']:6.1f} s")  # nothing after the time


def test_patience_stops_after_that_many_epochs_without_a_better_criterion():
    lines = []
    trainer = _scripted(_vae_trainer(_m2_data(), patience=2), [-5.0, -4.0, -4.5, -4.0, -3.0, -2.0])
    trainer.settings.epochs, trainer.log = 6, lines.append
    trainer.fit()
    assert trainer.state.epoch == 4  # epochs 3 and 4 are no better than epoch 2
    assert lines[-1] == "stopping early: no better valid_elbo for 2 epochs"
    # Patience reached just as the last epoch ends: the run simply ends, it did not stop early.
    lines.clear()
    finished = _scripted(_vae_trainer(_m2_data(), patience=2), [-5.0, -4.0, -4.5, -4.1])
    finished.settings.epochs, finished.log = 4, lines.append
    assert finished.fit().epoch == 4 and finished.stopped_early()
    assert not any("stopping early" in line for line in lines)
    unlimited = _scripted(_vae_trainer(_m2_data()), [-5.0, -4.0, -4.5, -4.0, -3.0, -2.0])
    unlimited.settings.epochs = 6
    assert unlimited.fit().epoch == 6 and not unlimited.stopped_early()


@pytest.mark.parametrize("warmup_steps,labels", [
    (3, ["train objective (ELBO, KL warm-up to beta=1)", "train ELBO"]),
    # Step 3 (the first of epoch 2) already has weight (3 + 1) / 4 = 1: epoch 2 is the ELBO.
    (4, ["train objective (ELBO, KL warm-up to beta=1)", "train ELBO"]),
    (5, ["train objective (ELBO, KL warm-up to beta=1)"] * 2),
])
def test_an_epoch_is_labelled_warm_up_exactly_when_one_of_its_steps_had_a_kl_weight_below_beta(warmup_steps, labels):
    trainer = _vae_trainer(_m2_data(), kl_warmup_steps=warmup_steps)  # 48 images in batches of 16: 3 steps
    assert [trainer.training_objective({"step": step}) for step in (3, 6)] == labels
    weights = []
    for step in range(6):
        trainer.state.step = step
        weights.append(trainer.kl_weight())
    for epoch, label in enumerate(labels):
        assert (min(weights[3 * epoch:3 * epoch + 3]) < 1) == ("warm-up" in label)


def test_a_conditional_model_is_traced_and_trained_with_its_labels():
    from pyro_vae.inference.objectives import make_objective
    from pyro_vae.inference.train import Trainer

    data = _m2_data()
    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(model="cvae", latent_dim=2, hidden_dims=[8]), SHAPE, num_classes=CLASSES)
    for name, particles in (("analytic-kl", 1), ("elbo", 1), ("elbo", 2)):
        trainer = Trainer(model, guide, make_objective(name, num_particles=particles), data,
                          TrainSettings(epochs=1, batch_size=16, analytic_kl=True, selection="valid-loglik",
                                        selection_k=2), progress=False, log=lambda s: None)
        assert trainer.latent_names == ["z"]
        row = trainer.fit().history[0]
        assert math.isfinite(row["train_objective"]) and math.isfinite(row["valid_loglik"])  # selection reads y too


#: tqdm's rate in batches: "?batch/s", "41.2batch/s" or "1.50s/batch".
_BATCH_RATE = re.compile(r"(?<![A-Za-z])batch/s|s/batch(?![A-Za-z])")


def test_progress_bars_are_shown_when_asked_even_without_a_terminal(capsys):
    from pyro_vae.inference.loglik import importance_log_likelihood

    trainer = _vae_trainer(_m2_data(), epochs=2)
    trainer.progress = None  # the default: a bar only on a terminal, and capsys is none
    trainer.settings.epochs = 1
    trainer.fit()
    assert capsys.readouterr().err == ""
    trainer.progress, trainer.settings.epochs = True, 2
    trainer.fit()
    err = capsys.readouterr().err
    assert "epoch 2:" in err and "/3 [" in err and _BATCH_RATE.search(err)
    importance_log_likelihood(trainer.model, trainer.guide, _m2_data().valid.images, k=3, progress=True)
    err = capsys.readouterr().err
    assert "log p(x), K=3:" in err and _BATCH_RATE.search(err)


def test_function_style_conditional_programs_are_traced_with_one_label_per_image():
    """Programs that read y (``needs_labels``): the trainer's first traced run passes the
    first image's label, shaped like the image batch, and they train."""
    from pyro_vae.inference.objectives import make_objective
    from pyro_vae.inference.train import Trainer

    pyro.clear_param_store()
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(36 + CLASSES, 4), torch.nn.Linear(2 + CLASSES, 36)

    def one_hot(y):
        return torch.nn.functional.one_hot(y, CLASSES).float()

    def guide(x, y):
        pyro.module("encoder", encoder)
        h = encoder(torch.cat([x.flatten(1), one_hot(y)], -1))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(h[:, :2], torch.nn.functional.softplus(h[:, 2:]) + 1e-3).to_event(1))

    def model(x, y):
        pyro.module("decoder", decoder)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
            logits = decoder(torch.cat([z, one_hot(y)], -1))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x.flatten(1))

    model.needs_labels = guide.needs_labels = True
    trainer = Trainer(model, guide, make_objective("elbo"), _m2_data(), TrainSettings(epochs=1, batch_size=16),
                      progress=False, log=lambda line: None)
    assert trainer.guide.names == ["encoder$$$weight", "encoder$$$bias"]
    assert trainer.model.names == ["decoder$$$weight", "decoder$$$bias"]
    before = decoder.weight.detach().clone()
    assert math.isfinite(trainer.fit().history[0]["train_objective"])
    assert not torch.equal(before, decoder.weight)  # the optimizer stepped the module's own weights


def test_the_supervised_baseline_steps_in_training_mode_and_scores_in_evaluation_mode():
    """A classifier with batch normalisation (--classifier-network conv --batch-norm) learns on
    batch statistics but is scored on its running averages: scoring leaves them as they were."""
    from pyro_vae.inference.semisupervised import train_supervised_baseline

    split = Split(torch.rand(40, 1, 2, 2), torch.arange(40) % 2)
    data = ImageDataset("grey", split, split, split, binarize="none")
    modes = {"step": set(), "score": set()}

    class Normalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.linear = torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)

        def forward(self, x):
            modes["step" if torch.is_grad_enabled() else "score"].add(self.training)
            return self.linear(self.norm(x.flatten(1)))

    classifier = Normalised()
    train_supervised_baseline(classifier, data, torch.arange(10), epochs=2, steps_per_epoch=3, batch_size=8)
    assert modes == {"step": {True}, "score": {False}}
    running = classifier.norm.running_mean.clone()
    with torch.no_grad():
        classifier(split.images)
    assert torch.equal(running, classifier.norm.running_mean)


def test_the_supervised_baseline_trains_on_binary_draws_of_dynamically_binarized_images():
    from pyro_vae.inference.semisupervised import train_supervised_baseline

    grey = Split(torch.full((30, 1, 2, 2), 0.5), torch.arange(30) % 2)
    data = ImageDataset("grey", grey, grey, grey, binarize="dynamic")
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x):
            if torch.is_grad_enabled():  # a training step (accuracy is scored without gradients)
                seen.append(x.clone())
            return self.linear(x.flatten(1))

    result = train_supervised_baseline(Recorder(), data, torch.arange(10), epochs=2, steps_per_epoch=3,
                                       batch_size=8)
    assert len(seen) == 6 and all(x.shape == (8, 1, 2, 2) for x in seen)
    assert all(set(x.unique().tolist()) == {0.0, 1.0} for x in seen)  # Bernoulli(0.5) draws, not 0.5
    assert result["best_epoch"] in (1, 2) and 0 <= result["test_accuracy"] <= 1
    # Seed 0 and learning rate 1e-3 by default: the same draws and steps, so the same
    # classifier, as both given; every draw comes from the seed, none from torch's global RNG.
    classifiers = []
    for i, options in enumerate(({}, {"seed": 0, "learning_rate": 1e-3})):
        torch.manual_seed(0)
        classifiers.append(Recorder())
        torch.manual_seed(100 + i)
        train_supervised_baseline(classifiers[-1], data, torch.arange(10), epochs=1, steps_per_epoch=2, batch_size=8,
                                  **options)
    assert torch.equal(classifiers[0].linear.weight, classifiers[1].linear.weight)
    torch.manual_seed(0)
    other = Recorder()
    train_supervised_baseline(other, data, torch.arange(10), epochs=1, steps_per_epoch=2, batch_size=8, seed=1)
    assert not torch.equal(other.linear.weight, classifiers[0].linear.weight)


def test_the_m2_epoch_line_calls_a_bound_a_bound_only_without_alpha():
    """The M2 objective adds alpha x log q(y | x) of the labelled batches: no bound unless
    alpha is 0; with beta != 1 the KL of z is weighted, which the line says too."""
    data = _m2_data()
    row = {"epoch": 1, "step": 1, "train_objective": -50.0, "valid_accuracy": 0.5, "seconds": 1.0}
    line = _m2_trainer(data, alpha=5.0)[0].describe(row)
    assert line.startswith("epoch   1  train M2 objective (not a bound: it adds alpha=5 x log q(y | x))    -50.00")
    assert _m2_trainer(data, alpha=0.0)[0].describe(row).startswith("epoch   1  train M2 bound    -50.00")
    assert "(the bound with the KL of z weighted by beta=2)" in _m2_trainer(data, alpha=0.0, beta=2.0)[0].describe(row)


def test_the_epochs_training_loss_standard_error_is_that_of_the_batch_means():
    """The epoch line printed the training objective without an uncertainty. Its standard error
    from the batches' sums: with equal batches it is the sample s.d. of the batch means over
    sqrt(B); an uneven last batch weighs by its size; one batch has none (NaN)."""
    import numpy as np

    from pyro_vae.inference.train import EpochTotal

    means = np.array([101.0, 97.5, 99.0, 104.0])
    total = EpochTotal()
    for m in means:
        total.add(float(m * 32), 32)
    total.add(0.0, 0)  # a rank's empty shard of the last batch adds nothing
    assert total.batches == 4 and total.total == pytest.approx(means.sum() * 32)
    assert total.stderr(128) == pytest.approx(means.std(ddof=1) / math.sqrt(4))
    uneven = EpochTotal()
    for value, n in ((100.0 * 10, 10), (90.0 * 30, 30)):
        uneven.add(value, n)
    mean = (1000 + 2700) / 40  # s^2 = (10 (100 - M)^2 + 30 (90 - M)^2) / (2 - 1), s.e. sqrt(s^2 / 40)
    assert uneven.stderr(40) == pytest.approx(math.sqrt((10 * (100 - mean) ** 2 + 30 * (90 - mean) ** 2) / 40))
    single = EpochTotal()
    single.add(5.0, 4)
    assert math.isnan(single.stderr(4))


@pytest.mark.parametrize("kind, classifier", [("m2", "q(y | x)"), ("adgm", "q(y | a, x)")])
def test_the_semi_supervised_epoch_line_names_the_models_own_classifier(kind, classifier):
    """The ADGM's epoch line (and the objective's name in summary.json and the curves) said it
    adds alpha x log q(y | x); its classifier reads the auxiliary a, q(y | a, x)."""
    from pyro_vae.config import Config
    from pyro_vae.runs import objective_name

    model, guide = build_vae(ModelConfig(model=kind, latent_dim=2, hidden_dims=[16]), SHAPE, num_classes=CLASSES)
    trainer = SemiSupervisedTrainer(model, guide, _m2_data(), torch.arange(6), TrainSettings(epochs=1, batch_size=16),
                                    alpha=5.0, progress=False)
    assert trainer.training_objective({}) == f"train M2 objective (not a bound: it adds alpha=5 x log {classifier})"
    config = Config.from_dict({"model": {"model": kind}, "train": {"alpha": 5.0}})
    assert f"alpha=5 x log {classifier} of the labelled batches" in objective_name(config)


def test_a_warm_up_or_patience_of_one_epoch_is_not_called_1_epochs():
    settings = TrainSettings(epochs=3, kl_warmup_epochs=1)
    assert settings.describe_objective() == "ELBO with the KL weight warmed up to beta=1 over 1 epoch"
    assert TrainSettings(epochs=3, kl_warmup_epochs=2).describe_objective().endswith("over 2 epochs")
