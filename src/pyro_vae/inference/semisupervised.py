r"""Semi-supervised learning with the M2 model (Kingma et al. 2014).

The objective, for labelled pairs (x, y) and unlabelled images x, is

.. math::

    \mathcal{J} = \sum_{(x, y)} \Big[ -\mathrm{ELBO}(x, y) - \alpha \log q(y | x) \Big]
                  + \sum_{x} -\Big[ \sum_y q(y | x)\, \mathrm{ELBO}(x, y) + H(q(y | x)) \Big],

where the unlabelled bound sums over the classes exactly: the guide's y is enumerated in
parallel and :class:`pyro.infer.TraceEnum_ELBO` does the sum. The auxiliary term trains the
classifier q(y | x) on the labelled examples directly (it is on by default, ``alpha`` > 0).
The same loss and trainer train the ADGM (:mod:`pyro_vae.models.adgm`): its guide draws the
auxiliary a before y, and its classification term reads ``guide.sample_logits(x)``, the
classifier q(y | a, x) at one draw of a.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from torch.nn import functional as F

from pyro_vae.data.datasets import ImageDataset, binarize_batch
from pyro_vae.errors import TrainingError
from pyro_vae.inference.codes import draw_codes
from pyro_vae.inference.kinds import MARGINAL
from pyro_vae.inference.loglik import LogLikelihoodEstimate, importance_log_likelihood
from pyro_vae.inference.objectives import scale_sites
from pyro_vae.inference.train import Trainer, TrainSettings, make_adam, with_stderr
from pyro_vae.inference.weights import MAX_PLATE_NESTING


class SemiSupervisedLoss:
    """Minus the M2 bound, summed over a batch (nats); ``alpha`` weights the classifier's
    cross-entropy on labelled examples, and ``z_weight`` (``--beta``) the KL term of the
    style z alone: log p(z) and log q(z | ...) are scaled by it in model and guide, so the
    bound's z part becomes ``-z_weight * KL(q(z | x, y) || p(z))`` while y's terms (its prior,
    q(y | x)'s entropy) keep weight 1. Why: a z that can hold the class for a few nats lets
    the decoder ignore y; a heavier z costs the class its place in z (``docs/results.md``)."""

    def __init__(self, alpha: float = 20000.0, max_plate_nesting: int = MAX_PLATE_NESTING, z_weight: float = 1.0):
        self.alpha = alpha
        self.z_weight = z_weight
        self.elbo = TraceEnum_ELBO(max_plate_nesting=max_plate_nesting)
        # With y observed nothing is enumerated: the plain ELBO does the same work.
        self.labelled_elbo = Trace_ELBO(max_plate_nesting=max_plate_nesting)

    def _weighted(self, model: Callable, guide: Callable) -> tuple[Callable, Callable]:
        if self.z_weight == 1.0:
            return model, guide
        return scale_sites(model, ["z"], self.z_weight), scale_sites(guide, ["z"], self.z_weight)

    def labelled(self, model: Callable, guide, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.labelled_elbo.differentiable_loss(*self._weighted(model, guide), x, y)
        if self.alpha:
            # the guide's classifier at one draw of whatever it samples before y (the ADGM's a; M2: nothing)
            loss = loss + self.alpha * F.cross_entropy(guide.sample_logits(x), y, reduction="sum")
        return loss

    def unlabelled(self, model: Callable, guide, x: torch.Tensor) -> torch.Tensor:
        return self.elbo.differentiable_loss(*self._weighted(model, guide), x)


@torch.no_grad()
def classification_accuracy(guide, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of ``images`` whose most probable class under q(y | x) is the label."""
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = guide.classify(images[start:start + batch_size])
        correct += (logits.argmax(-1) == labels[start:start + batch_size]).sum().item()
    return correct / len(images)


def marginal_log_likelihood(model: Callable, guide: Callable, x: torch.Tensor, num_classes: int, *, k: int,
                            **options) -> LogLikelihoodEstimate:
    """log p(x) = log sum_y p(x, y) for a model with a discrete label y: for every class the
    importance-sampling estimate of p(x, y) over z (y observed, z from q(z | x, y)), then an
    exact log-sum over the classes. ``ess`` is that of all C * K weights together
    (:func:`pooled_ess`), between 1 and C * K."""
    per_class = [importance_log_likelihood(model, guide, x, k=k,
                                           y=torch.full((len(x),), c, dtype=torch.long, device=x.device), **options)
                 for c in range(num_classes)]
    log_joint = torch.stack([e.log_likelihood for e in per_class])
    ess = pooled_ess(log_joint, torch.stack([e.ess for e in per_class]))
    return LogLikelihoodEstimate(torch.logsumexp(log_joint, 0), ess, k, sum(e.seconds for e in per_class),
                                 per_class[0].kind, MARGINAL, draws=num_classes * k)


def pooled_ess(log_means: torch.Tensor, ess: torch.Tensor) -> torch.Tensor:
    """The effective sample size (sum w)^2 / sum w^2 of the weights of every class together,
    ``[N]``, from each class's log mean weight and ESS over its K draws, ``[C, N]``: with
    sum_k w = K e^{m_c} and sum_k w^2 = (K e^{m_c})^2 / ess_c,

    ESS = (sum_c e^{m_c})^2 / sum_c e^{2 m_c} / ess_c,

    K cancelling. One class's ESS where it holds all the mass; C times it for C equal classes.
    The smallest ESS over the classes, reported before, was that of a class with next to no
    mass (a wrong label's poor q(z | x, y)) for every image, and warned of every estimate."""
    return torch.exp(2 * torch.logsumexp(log_means, 0) - torch.logsumexp(2 * log_means - ess.log(), 0))


def classifier_name(auxiliary: bool = False) -> str:
    """The classifier whose log-probability the objective adds: q(y | x), or the ADGM's q(y | a, x)."""
    return "q(y | a, x)" if auxiliary else "q(y | x)"


def objective_name(alpha: float, beta: float = 1.0, auxiliary: bool = False) -> str:
    """What :class:`SemiSupervisedTrainer`'s ``train_objective`` holds, in words (``auxiliary``:
    the ADGM, whose classifier reads its auxiliary a)."""
    weight = f", the KL term of z weighted by beta={beta:g}" if beta != 1 else ""
    return (f"the M2 objective (the unlabelled bound, plus the labelled bound and alpha={alpha:g} x "
            f"log {classifier_name(auxiliary)} of the labelled batches{weight})")


class SemiSupervisedTrainer(Trainer):
    """Trains M2. Every step takes one unlabelled batch (the whole training split in a
    shuffled order, labels hidden) and one labelled batch of the same size (drawn with
    replacement from the ``labelled`` indices), a fixed 1:1 ratio of batches. The labelled
    batch's loss is multiplied by ``labelled_weight``; by default (None) that is
    (N_l / B_l) / (N / B), so each step estimates, without bias and up to the constant
    B / N, the objective summed over the whole data set, where the N_l labelled examples
    count once each, as in Kingma et al.; 1 counts a labelled batch like an unlabelled one
    (which over-weighs a few labels several hundred times). Either weight is multiplied by
    b / B on a step whose unlabelled batch holds b < B images (the epoch's last, when B does
    not divide N), so the per-image weights are the same on every step. After each epoch the
    classifier q(y | x) is scored on the validation split; the best model is the one with
    the best validation accuracy, and the test split is scored once, after training
    (:meth:`test_accuracy`), so nothing is chosen by it. With ``code_scales`` ``[N, ...]``
    (M1+M2, ``--m1-codes sample``) every training example of a batch, labelled or not, is
    drawn afresh as N(example, scale^2) from the trainer's noise stream (the one dynamic
    binarization draws from; checkpointed, so a resumed run draws what it would have)."""

    def __init__(self, model, guide, dataset: ImageDataset, labelled: torch.Tensor, settings: TrainSettings,
                 alpha: float = 20000.0, labelled_weight: float | None = None,
                 code_scales: torch.Tensor | None = None, **options):
        super().__init__(model, guide, SemiSupervisedLoss(alpha, z_weight=settings.beta), dataset, settings, **options)
        self.labelled = labelled.to(self.device)
        # M1+M2 with --m1-codes sample: each training code is redrawn, N(code, scale^2), for every batch
        self.code_scales = None if code_scales is None else code_scales.to(self.device)
        self.alpha = alpha  # for the epoch line (the objective holds it too)
        if labelled_weight is None:
            labelled_batch = min(settings.batch_size, len(labelled))
            labelled_weight = (len(labelled) / labelled_batch) / (len(dataset.train) / settings.batch_size)
        self.labelled_weight = labelled_weight

    def train_epoch(self) -> float:
        images, labels = self.dataset.train.images, self.dataset.train.labels
        size = self.settings.batch_size
        order, first, self.epoch_total = self.begin_epoch(len(images))
        for start in range(first * size, len(images), size):
            picked = self.labelled[torch.randint(len(self.labelled), (min(size, len(self.labelled)),),
                                                 generator=self.generator, device=self.device)]
            rows = order[start:start + size]
            x, x_labelled = images[rows], images[picked]
            if self.dataset.binarize == "dynamic":
                x, x_labelled = binarize_batch(x, self.noise_generator), binarize_batch(x_labelled, self.noise_generator)
            if self.code_scales is not None:
                x = draw_codes(x, self.code_scales[rows], self.noise_generator)
                x_labelled = draw_codes(x_labelled, self.code_scales[picked], self.noise_generator)
            self.optimizer.zero_grad(set_to_none=True)
            # The epoch's last unlabelled batch may be short (N not a multiple of B): its labelled batch is
            # weighted down alike, len(x) / B, so every step estimates the objective up to len(x) / N and an
            # epoch's labelled terms add up to each labelled example once (a full weight over-counted them).
            weight = self.labelled_weight * len(x) / size
            loss = (self.objective.unlabelled(self.model, self.guide, x)
                    + weight * self.objective.labelled(self.model, self.guide, x_labelled, labels[picked]))
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(f"the loss became {value} at step {self.state.step + 1}; lower --learning-rate "
                                    "or --alpha (the last good checkpoint is kept).")
            loss.backward()
            if self.settings.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.parameters, self.settings.clip_norm)
            self.optimizer.step()
            self.epoch_total.add(value, len(x))
            self.state.step += 1
            if self._stop_signal is not None:
                self._save_interrupted(order, start // size + 1)
        return -self.epoch_total.total / len(images)

    def selection_key(self) -> str:
        return "valid_accuracy"

    def validate(self) -> tuple[dict, float]:
        """q(y | x)'s validation accuracy (it selects) and its binomial standard error."""
        from pyro_vae.inference.judge import binomial_stderr

        valid = classification_accuracy(self.guide, self.dataset.valid.images, self.dataset.valid.labels)
        return {"valid_accuracy": valid,
                "valid_accuracy_stderr": binomial_stderr(valid, len(self.dataset.valid))}, valid

    def training_objective(self, row: dict) -> str:
        """What the epoch's training number is: with alpha > 0 it holds alpha x log q(y | x) of
        the labelled batches (minus the classifier's cross-entropy), so it is no bound; with
        beta != 1 the KL term of z is weighted (:func:`objective_name` in full)."""
        alpha, beta = self.alpha, self.settings.beta
        if alpha:
            from pyro_vae.models import ADGMModel

            classifier = classifier_name(isinstance(self.model, ADGMModel))  # the ADGM's reads its a: q(y | a, x)
            return f"train M2 objective (not a bound: it adds alpha={alpha:g} x log {classifier})"
        if beta != 1:
            return f"train M2 objective (the bound with the KL of z weighted by beta={beta:g})"
        return "train M2 bound"

    def describe(self, row: dict) -> str:
        error = row.get("valid_accuracy_stderr")  # a binomial standard error over the validation images
        # in percent, as the test accuracy is printed at the end
        accuracy = f"{100 * row['valid_accuracy']:.2f}" + ("" if error is None else f" ± {100 * error:.2f}") + "%"
        return (f"epoch {row['epoch']:>3}  {self.training_objective(row)} {with_stderr(row, 'train_objective', 9)}  valid accuracy "
                f"{accuracy} (selects)  {row['seconds']:6.1f} s")

    def test_accuracy(self) -> float:
        """q(y | x)'s test accuracy with the best epoch's parameters (chosen by validation
        accuracy alone), scored once after training; the model and guide keep those parameters."""
        best = self.best_checkpoint()
        self.model.load_state_dict(best["model"])
        self.guide.load_state_dict(best["guide"])
        return classification_accuracy(self.guide, self.dataset.test.images, self.dataset.test.labels)


def train_supervised_baseline(classifier: torch.nn.Module, dataset: ImageDataset, labelled: torch.Tensor,
                              epochs: int, steps_per_epoch: int, batch_size: int = 128, learning_rate: float = 1e-3,
                              seed: int = 0, lr_decay: float = 1.0, clip_norm: float = 0.0,
                              code_scales: torch.Tensor | None = None) -> dict:
    """The classifier trained on the labelled examples alone (cross-entropy), with the same
    budget of steps and batch size as M2 (and its schedule: the learning rate times ``lr_decay``
    after every epoch, gradients clipped to a global norm of ``clip_norm`` where > 0), the best
    epoch chosen by validation accuracy. Returns its validation accuracy, the best epoch, and
    the test accuracy of that epoch's parameters, scored once at the end (the classifier is
    left holding them). ``code_scales`` ``[N, ...]`` (M1+M2's sampled codes): each training
    example is redrawn as N(example, scale^2) in every batch, as M2's are."""
    best = fit_supervised_baseline(classifier, dataset, labelled, epochs, steps_per_epoch, batch_size,
                                   learning_rate, seed, lr_decay, clip_norm, code_scales)
    return {**best, "test_accuracy": _test_accuracy(classifier, dataset)}


def _test_accuracy(classifier: torch.nn.Module, dataset: ImageDataset) -> float:
    return classification_accuracy(_ClassifierAsGuide(classifier), dataset.test.images, dataset.test.labels)


def fit_supervised_baseline(classifier: torch.nn.Module, dataset: ImageDataset, labelled: torch.Tensor,
                            epochs: int, steps_per_epoch: int, batch_size: int = 128, learning_rate: float = 1e-3,
                            seed: int = 0, lr_decay: float = 1.0, clip_norm: float = 0.0,
                            code_scales: torch.Tensor | None = None) -> dict:
    """:func:`train_supervised_baseline` without reading the test split: the validation
    accuracy and the best epoch, the classifier left holding that epoch's parameters."""
    device = next(classifier.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    noise = torch.Generator(device=device).manual_seed(seed + 1)
    optimizer = make_adam(list(classifier.parameters()), learning_rate)
    images, labels = dataset.train.images, dataset.train.labels
    labelled = labelled.to(device)
    code_scales = None if code_scales is None else code_scales.to(device)
    best = {"valid_accuracy": -1.0}
    wrapper = _ClassifierAsGuide(classifier)
    for epoch in range(1, epochs + 1):
        for group in optimizer.param_groups:  # M2's schedule (Trainer.begin_epoch): decayed after every epoch
            group["lr"] = learning_rate * lr_decay ** (epoch - 1)
        classifier.train()  # batch normalisation (a conv classifier's --batch-norm) steps on batch statistics
        for _ in range(steps_per_epoch):
            picked = labelled[torch.randint(len(labelled), (min(batch_size, len(labelled)),), generator=generator,
                                            device=device)]
            x = images[picked]
            if dataset.binarize == "dynamic":
                x = binarize_batch(x, noise)
            if code_scales is not None:
                x = draw_codes(x, code_scales[picked], noise)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(classifier(x), labels[picked]).backward()
            if clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(list(classifier.parameters()), clip_norm)
            optimizer.step()
        classifier.eval()  # and scores on its running averages, so an image's class never depends on its batch
        valid = classification_accuracy(wrapper, dataset.valid.images, dataset.valid.labels)
        if valid > best["valid_accuracy"]:
            best = {"valid_accuracy": valid, "best_epoch": epoch}
            best_state = {k: v.detach().clone() for k, v in classifier.state_dict().items()}
    classifier.load_state_dict(best_state)
    return best


#: The learning rates the supervised baseline tries; it keeps the one with the best validation accuracy.
BASELINE_LEARNING_RATES = (3e-4, 1e-3, 3e-3)


def tuned_supervised_baseline(make_classifier: Callable[[], torch.nn.Module], dataset: ImageDataset,
                              labelled: torch.Tensor, epochs: int, steps_per_epoch: int, batch_size: int = 128,
                              seed: int = 0, learning_rates=BASELINE_LEARNING_RATES, lr_decay: float = 1.0,
                              clip_norm: float = 0.0, code_scales: torch.Tensor | None = None) -> dict:
    """:func:`train_supervised_baseline` at each of ``learning_rates`` (a fresh classifier from
    ``make_classifier`` each time, initialised alike), the one with the best validation
    accuracy kept: the baseline gets its own learning rate and its own best epoch, both
    chosen by validation accuracy, as M2 does; the test split is scored once, by the classifier
    kept. Adds ``learning_rate`` to the result."""
    best = kept = None
    for rate in learning_rates:
        classifier = make_classifier()
        result = {**fit_supervised_baseline(classifier, dataset, labelled, epochs, steps_per_epoch, batch_size, rate,
                                            seed, lr_decay, clip_norm, code_scales), "learning_rate": rate}
        if best is None or result["valid_accuracy"] > best["valid_accuracy"]:
            best, kept = result, classifier
    return {**best, "test_accuracy": _test_accuracy(kept, dataset)}


class _ClassifierAsGuide:
    def __init__(self, classifier):
        self.classify = classifier
