r"""Does the label control what a labelled generator draws? Label fidelity and a linear probe.

**Label fidelity.** A labelled model decodes a code z with a label y into an image (its
likelihood's mean image E[x | z, y], not a sample: the figures show the same). An independent
classifier, the judge (:mod:`pyro_vae.inference.judge`), names the class it sees. The fidelity
of label y is the share of images decoded with y that the judge assigns to y,

.. math::  f_y = \frac{1}{n_y} \sum_{i: y_i = y} 1[\hat c(\mathrm{decode}(z_i, y)) = y],

overall the share over all images, each with the binomial standard error
:math:`\sqrt{f (1 - f) / n}`. Two sources of codes:

* **prior**: ``per_class`` codes z ~ p(z | y) for every label y (seeded);
* **style grid**: z = the posterior mean of q(z | x, y) of real test images x (with their
  own labels), each decoded with every label, as ``pyro-vae plot --kind style`` draws it. The
  cells whose label differs from the image's own class are counted apart (``swapped``): there
  the decoder must override whatever class the code carries.

The judge is imperfect; its own test accuracy on real images is reported beside the fidelity.

**Linear probe.** How much the encoder's z keeps about the class: a multinomial logistic
regression fitted on the posterior means z of training images to predict their labels and
scored on test images. A high accuracy (far above chance) means z carries the class, and a
decoder that can read the class from z has no need of y: that is how a labelled VAE learns to
ignore its label.

A model plugs in through :class:`LabelModel`: ``decode(z, y)``, ``encode_style(x, y)`` and
``sample_prior(y)``; :func:`label_model` builds one from a (model, guide) pair that has
``decode_mean``, ``encode`` and ``sample_prior`` (the CVAE and M2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch.nn import functional as F

from pyro_vae.inference.judge import binomial_stderr
from pyro_vae.inference.randomness import random_state_kept

Decode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z [N, L], y [N]) -> images [N, C, H, W]
EncodeStyle = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [N, C, H, W], y [N]) -> z [N, L]
SamplePrior = Callable[[torch.Tensor], torch.Tensor]  # y [N] -> z [N, L] ~ p(z | y)
Classify = Callable[[torch.Tensor], torch.Tensor]  # images [N, C, H, W] -> predicted classes [N]


@dataclass(frozen=True)
class LabelModel:
    """What the fidelity needs of a labelled generator: ``decode(z, y)`` gives mean images
    ``[N, C, H, W]`` for codes ``[N, L]`` and labels ``[N]``; ``encode_style(x, y)`` the code
    ``[N, L]`` (posterior mean) of images with their labels; ``sample_prior(y)`` one code
    z ~ p(z | y) per label, drawn from torch's global generator (seeded by the caller).
    ``modules``: the ``torch.nn.Module``s the three read, which the fidelity and the figures
    put in evaluation mode while they draw (:func:`~pyro_vae.inference.programs.evaluation_mode`)
    and hand back in the modes they came in."""

    decode: Decode
    encode_style: EncodeStyle
    sample_prior: SamplePrior
    num_classes: int
    modules: tuple = ()

    def decode_mean(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``decode(z, y)`` under the name a conditional model gives it, so the figures that draw a
        model's class rows (:func:`~pyro_vae.plots.plot_samples`) draw a LabelModel too (M1+M2)."""
        return self.decode(z, y)


def label_model(model, guide) -> LabelModel:
    """The :class:`LabelModel` of a CVAE or M2 (model, guide) pair."""
    return LabelModel(decode=model.decode_mean, encode_style=lambda x, y: guide.encode(x, y)[0],
                      sample_prior=model.sample_prior, num_classes=model.num_classes, modules=(model, guide))


def _in_evaluation_mode(function: Callable) -> Callable:
    """Run ``function(generator, ...)`` with the generator's modules in evaluation mode: a model
    left in training mode decoded and encoded with batch statistics (a cell's class then depended
    on the others in its batch) and moved its batch-norm running statistics."""
    import functools

    @functools.wraps(function)
    def wrapper(generator: LabelModel, *args, **kwargs):
        from pyro_vae.inference.programs import evaluation_mode

        with evaluation_mode(*getattr(generator, "modules", ())):  # a stand-in without modules: as it is
            return function(generator, *args, **kwargs)
    return wrapper


@dataclass
class Proportion:
    """A share of hits, its binomial standard error and the number of trials."""

    value: float
    stderr: float
    n: int

    @classmethod
    def of(cls, hits: torch.Tensor) -> Proportion:
        n = int(hits.numel())
        value = hits.float().mean().item() if n else float("nan")
        return cls(value, binomial_stderr(value, n), n)

    def to_dict(self) -> dict:
        """For JSON: a share of no images is null, not NaN."""
        if not self.n:
            return {"value": None, "stderr": None, "n": 0}
        return asdict(self)


@dataclass
class Fidelity:
    """Overall and per-label fidelity (``per_class[y]``: images decoded with label y)."""

    overall: Proportion
    per_class: list[Proportion]

    def to_dict(self) -> dict:
        return {"fidelity": self.overall.value, "stderr": self.overall.stderr, "images": self.overall.n,
                "per_class": [p.to_dict() for p in self.per_class]}


def fidelity_of(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Fidelity:
    """Fidelity from the judge's classes ``predicted`` ``[N]`` of images decoded with ``labels`` ``[N]``."""
    hits = predicted.cpu() == labels.cpu()
    labels = labels.cpu()
    return Fidelity(Proportion.of(hits), [Proportion.of(hits[labels == c]) for c in range(num_classes)])


@torch.no_grad()
def _judge_decoded(decode: Decode, classify: Classify, codes: torch.Tensor, labels: torch.Tensor,
                   batch_size: int) -> torch.Tensor:
    return torch.cat([classify(decode(codes[i:i + batch_size], labels[i:i + batch_size])).cpu()
                      for i in range(0, len(labels), batch_size)])


@torch.no_grad()
@_in_evaluation_mode
def prior_fidelity(generator: LabelModel, classify: Classify, per_class: int = 100, seed: int = 0,
                   device: torch.device | str = "cpu", batch_size: int = 1000) -> Fidelity:
    """Fidelity of ``per_class`` codes z ~ p(z | y) for each label y, decoded with y
    (the draws are seeded with ``seed``; the caller's random state is left as it was)."""
    labels = torch.arange(generator.num_classes, device=device).repeat_interleave(per_class)
    with random_state_kept():
        torch.manual_seed(seed)
        codes = generator.sample_prior(labels)
    predicted = _judge_decoded(generator.decode, classify, codes, labels, batch_size)
    return fidelity_of(predicted, labels, generator.num_classes)


@torch.no_grad()
@_in_evaluation_mode
def style_grid_fidelity(generator: LabelModel, classify: Classify, images: torch.Tensor, labels: torch.Tensor,
                        batch_size: int = 1000) -> tuple[Fidelity, Proportion]:
    """Fidelity of the style grid: the codes z = encode_style(x, own label) of ``images``
    ``[N, C, H, W]`` decoded with every label (N x K cells). Returns the fidelity over all
    cells and, apart, over the N (K - 1) cells whose label is not the image's own."""
    codes = torch.cat([generator.encode_style(images[i:i + batch_size], labels[i:i + batch_size])
                       for i in range(0, len(labels), batch_size)])
    k = generator.num_classes
    cell_codes = codes.repeat(k, 1)  # row y of the grid: every image's code, decoded with y
    cell_labels = torch.arange(k, device=codes.device).repeat_interleave(len(labels))
    predicted = _judge_decoded(generator.decode, classify, cell_codes, cell_labels, batch_size)
    own = labels.to(cell_labels.device).repeat(k)
    swapped = (cell_labels != own).cpu()
    hits = predicted == cell_labels.cpu()
    return fidelity_of(predicted, cell_labels, k), Proportion.of(hits[swapped])


@dataclass
class ProbeResult:
    """A linear probe's test accuracy (with its binomial standard error) and chance level:
    the test share of the most frequent training class."""

    accuracy: float
    stderr: float
    chance: float
    train_examples: int
    test_examples: int

    def to_dict(self) -> dict:
        return asdict(self)


def linear_probe(z_train: torch.Tensor, y_train: torch.Tensor, z_test: torch.Tensor, y_test: torch.Tensor,
                 num_classes: int, l2: float = 1e-3, max_iter: int = 200) -> ProbeResult:
    r"""Multinomial logistic regression from codes ``[N, L]`` to labels ``[N]``: features
    standardised with the training mean and standard deviation, weights W ``[L, K]`` and
    bias b ``[K]`` minimising the mean cross-entropy + ``l2`` |W|^2 by L-BFGS (from zero: the
    fit is deterministic), scored on the test codes."""
    z_train, z_test = z_train.detach().double().cpu(), z_test.detach().double().cpu()
    y_train, y_test = y_train.cpu(), y_test.cpu()
    mean, std = z_train.mean(0), z_train.std(0).clamp_min(1e-8)
    a, b = (z_train - mean) / std, (z_test - mean) / std
    weight = torch.zeros(a.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(a @ weight + bias, y_train) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        hits = (b @ weight + bias).argmax(-1) == y_test
    accuracy = hits.double().mean().item()
    majority = int(torch.bincount(y_train, minlength=num_classes).argmax())
    chance = (y_test == majority).double().mean().item()
    return ProbeResult(accuracy, binomial_stderr(accuracy, len(y_test)), chance, len(y_train), len(y_test))


@torch.no_grad()
@_in_evaluation_mode
def encode_all(generator: LabelModel, images, labels: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The codes ``[N, L]`` of ``images`` (a tensor or byte images) with their labels."""
    return torch.cat([generator.encode_style(images[i:i + batch_size], labels[i:i + batch_size])
                      for i in range(0, len(labels), batch_size)])
