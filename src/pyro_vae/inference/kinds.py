"""What a log-likelihood number is, whether two of them can be ranked, and bits per dimension.

A number in nats per example means something only with its data and its measure:

* ``"probability mass on binary data"``: log P(x) of 0/1 images (the Bernoulli, or any
  likelihood scored on binarized images);
* ``"probability mass on 8-bit data"``: log P(x) of the 256-level images (the discretized
  likelihoods);
* ``"dequantized lower bound on 8-bit mass"``: a continuous density scored on uniformly
  dequantized 8-bit images, E_u[log p(x + u)] + log |bin|, a lower bound on the mass the
  density gives each 8-bit image (:mod:`pyro_vae.inference.dequantize`);
* ``"density (not comparable)"``: a density on grey levels as they are, which grows without
  bound as a Gaussian's sigma shrinks; comparable with no mass.

Masses (and lower bounds on masses) of the same images can be ranked; binary and 8-bit
data are different data sets, whatever the numbers say.

A number is also of a *quantity*: what it estimates or bounds. Most models' is the marginal
log p(x) (:data:`MARGINAL`); the conditional VAE's is log p(x | y), the label given, and
quadrant completion's log p(x_m | x_g), over the missing pixels alone given the others
(:func:`quantity`). Numbers of different quantities are not ranked, whatever their kinds:
a conditional log-likelihood is not a log p(x), and one over 588 pixels is not one over 784.
"""

from __future__ import annotations

import math
from typing import NamedTuple

BINARY_MASS = "probability mass on binary data"
EIGHT_BIT_MASS = "probability mass on 8-bit data"
DEQUANTIZED_BOUND = "dequantized lower bound on 8-bit mass"
DENSITY = "density (not comparable)"
KINDS = (BINARY_MASS, EIGHT_BIT_MASS, DEQUANTIZED_BOUND, DENSITY)

#: The quantity of most models' numbers: the marginal log-likelihood of the whole image.
MARGINAL = "log p(x)"
#: The conditional VAE's: the image's log-likelihood given its label.
GIVEN_LABEL = "log p(x | y)"
#: The quantity's short name for quadrant completion (:func:`quantity` adds which quadrants).
COMPLETION = "log p(x_m | x_g)"
#: A plain autoencoder's number: the reconstruction term at the encoder's code, no bound on log p(x).
RECONSTRUCTION = "log p(x | code)"
#: Quadrant completion's given quadrants, in order (as :mod:`pyro_vae.models.quadrant`).
QUADRANT_ORDER = ("top-left", "top-right", "bottom-left")


def quantity(model: str, given_quadrants: int = 1) -> str:
    """What a ``model``'s ELBO bounds and its importance-sampling estimate estimates:
    :data:`GIVEN_LABEL` for ``"cvae"``; for ``"quadrant"`` log p(x_m | x_g) with the given
    quadrants named (two runs given different quadrants score different pixels); else
    :data:`MARGINAL` (M2's and the ADGM's label is summed out)."""
    if model == "cvae":
        return GIVEN_LABEL
    if model == "quadrant":
        given = QUADRANT_ORDER[:given_quadrants]
        return f"{COMPLETION}, x_g the {' and '.join(given)} quadrant{'s' if len(given) > 1 else ''}"
    return MARGINAL


def short_quantity(name: str) -> str:
    """A quantity's name without its qualification ("log p(x_m | x_g)" for quadrant completion)."""
    return name.split(",")[0]


def number_kind(data_kind: str, binary_data: bool, dequantized: bool = False) -> str:
    """The kind of a log-likelihood from a likelihood with ``data_kind`` ("binary", "8-bit",
    "unit-interval") scored on binarized (``binary_data``) or 8-bit images, with continuous
    likelihoods' scores ``dequantized`` or not. A binary likelihood's is always a mass on binary
    data: its support admits no other images (``fit`` on 0/1 tensors records no binarization)."""
    if data_kind not in ("binary", "8-bit", "unit-interval"):
        raise ValueError(f"unknown data kind {data_kind!r}")
    if data_kind == "binary":  # a Bernoulli scores 0/1 pixels only (its support is checked), whatever the config says
        return BINARY_MASS
    if data_kind != "unit-interval":
        return BINARY_MASS if binary_data else EIGHT_BIT_MASS
    return DEQUANTIZED_BOUND if dequantized and not binary_data else DENSITY


class Comparison(NamedTuple):
    """Whether two numbers can be ranked (``ok``), and one sentence saying why or why not."""

    ok: bool
    reason: str


def different_quantities(quantity_a: str, quantity_b: str) -> Comparison:
    """The verdict on two numbers of different quantities, whatever their kinds: not ranked."""
    return Comparison(False, f"one is {quantity_a}, the other {quantity_b}: different quantities (a conditional "
                             "log-likelihood is not a log p(x), nor one over some pixels one over all), so they "
                             "cannot be ranked")


def comparable(kind_a: str, kind_b: str, quantity_a: str = MARGINAL, quantity_b: str = MARGINAL) -> Comparison:
    """Whether log-likelihoods of kinds ``kind_a`` and ``kind_b`` (on the same data set), of
    quantities ``quantity_a`` and ``quantity_b`` (:func:`quantity`), can be ranked; the
    reason is a sentence to print beside them."""
    for kind in (kind_a, kind_b):
        if kind not in KINDS:
            raise ValueError(f"unknown kind of number {kind!r}; expected one of {KINDS}")
    if quantity_a != quantity_b:
        return different_quantities(quantity_a, quantity_b)
    pair = {kind_a, kind_b}
    if pair == {DENSITY}:
        return Comparison(True, "both are densities on the same grey levels: comparable with each other, "
                                "though neither is bounded above nor comparable with a probability mass")
    if DENSITY in pair:
        return Comparison(False, "one is a density on grey levels, the other a probability (mass); "
                                 "they are on different scales and cannot be ranked")
    if BINARY_MASS in pair and len(pair) == 2:
        return Comparison(False, "one is scored on binarized images and the other on 8-bit images: "
                                 "different data, so the numbers cannot be ranked")
    if pair == {EIGHT_BIT_MASS, DEQUANTIZED_BOUND}:
        return Comparison(True, "both are log-probabilities of the same 8-bit images; the dequantized one "
                                "is a lower bound on its model's")
    return Comparison(True, f"both are of one kind ({kind_a})")


def dimensions(image_shape) -> int:
    """D = C * H * W, the number of pixel values per example."""
    return math.prod(int(n) for n in image_shape)


def bits_per_dim(nats_per_example: float, dims: int) -> float:
    """The negative log-likelihood in bits per dimension: -nats / (D ln 2)."""
    return -nats_per_example / (dims * math.log(2))


def describe(log_likelihood_mean: float, log_likelihood_stderr: float, image_shape, kind: str,
             likelihood: str, binarize: str, scored: int | None = None) -> dict:
    """The fields that go with a log-likelihood into loglik.json and summary.json; ``scored``:
    the number of pixel values the log-likelihood sums over where not all of the image's
    (quadrant completion scores the missing pixels alone), the D of its bits/dim."""
    dims = dimensions(image_shape) if scored is None else int(scored)
    return {"likelihood": likelihood, "binarize": binarize, "kind": kind, "dimensions": dims,
            "bits_per_dim": bits_per_dim(log_likelihood_mean, dims),
            "bits_per_dim_stderr": log_likelihood_stderr / (dims * math.log(2))}
