r"""Normalizing-flow guides: q(z | x) = a diagonal Normal pushed through amortized flows.

.. math::

    z_0 \sim N(\mathrm{loc}(x), \mathrm{diag}(\mathrm{scale}(x)^2)), \quad
    z = f_T \circ \dots \circ f_1(z_0; h(x)), \quad
    \log q(z | x) = \log N(z_0) - \sum_t \log \left|\det \frac{\partial f_t}{\partial z_{t-1}}\right|,

where h(x) ``[B, F]`` are the encoder's features (the context every step is conditioned
on) and each f_t is one of Pyro's conditional transforms
(:mod:`pyro.distributions.transforms`): ``iaf`` (conditional affine autoregressive, Kingma
et al. 2016), ``householder`` (a conditional Householder reflection, volume-preserving)
or ``planar`` (Rezende & Mohamed 2015). The guide samples site ``z`` from a
``TransformedDistribution``, so everything that reads log q from the trace (the ELBOs,
IWAE, the importance-sampled log-likelihood) works unchanged. Planar flows cannot be
inverted, so log q is only available at the guide's own draws: fine for those, not for
``iwae-dreg`` (which evaluates log q with detached parameters at a given z).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import ConditionalAutoRegressiveNN
from pyro.nn.module import PyroModule
from pyro_vae.distributions import FullPlate
from pyro_vae.pyro_modules import to_pyro_network_
from torch import nn
from torch.nn import functional as F

FLOWS = ("none", "iaf", "householder", "planar")


def make_flow_steps(name: str, latent_dim: int, context_dim: int, steps: int) -> nn.ModuleList:
    """``steps`` conditional transforms of kind ``name`` on ``[..., latent_dim]`` with a
    context of ``context_dim`` features. IAF steps use Pyro's default hidden layer of
    10 * latent_dim units and a fresh random order of the latent dimensions each.

    IAF steps start as the identity (:func:`start_at_identity`), as in Kingma et al. 2016,
    so q(z | x) begins as the encoder's diagonal Normal; Householder reflections cannot
    (a reflection is never the identity), and a planar step at the identity (u = 0, w = 0)
    would get no gradient, so those two keep Pyro's random initialisation."""
    if name == "iaf":
        return nn.ModuleList(start_at_identity(T.conditional_affine_autoregressive(latent_dim, context_dim))
                             for _ in range(steps))
    if name == "householder":
        return nn.ModuleList(T.conditional_householder(latent_dim, context_dim) for _ in range(steps))
    if name == "planar":
        return nn.ModuleList(T.conditional_planar(latent_dim, context_dim) for _ in range(steps))
    raise ValueError(f"unknown flow {name!r}")


def start_at_identity(step: T.ConditionalAffineAutoregressive) -> T.ConditionalAffineAutoregressive:
    r"""Zero the output layer of an IAF step's autoregressive network, so that its shift
    :math:`\mu(z, h) = 0` and log-scale :math:`\log\sigma(z, h) = 0` for every input: the step
    maps z to z with a log-determinant of 0. The layer still learns (its gradient is the
    hidden activations), and the layers below start learning after its first update. Why:
    a random step perturbs the encoder's Normal by up to a few nats per example, which
    undoes most of what a run warm-started with ``--init-from SOURCE --flow iaf`` inherits."""
    output = step.nn.layers[-1]
    with torch.no_grad():
        output.weight.zero_()
        output.bias.zero_()
    return step


class ContextProjectedARN:
    r"""Pyro's conditional MADE (``ConditionalAutoRegressiveNN``) conditioned on a context
    ``h`` ``[..., F]``, as the ``partial(arn, context=h)`` that
    ``ConditionalAffineAutoregressive.condition`` builds, with the context's share of the first
    layer computed once per context rather than once per draw:

    .. math::  W [h, z] + b = (W_h h + b) + W_z z,

    where Pyro concatenates h, expanded to every draw, with z ``[..., L]``. With K draws per
    context the first layer's product then reads L inputs per draw rather than F + L (40
    rather than 340 for the 300-unit encoder's IAF: most of the flow's arithmetic at K=5000,
    issue #19). Same weights, masks and activation; the values differ from Pyro's by float
    rounding (the two sums are added in another order). Returns ``(mean, log_scale)``
    ``[..., L]`` each, as the network does with its default ``param_dims=[1, 1]``.
    """

    def __init__(self, arn: ConditionalAutoRegressiveNN, context: torch.Tensor):
        first = arn.layers[0]
        weight = first.weight * first.mask  # [H, F + L]; Pyro's MaskedLinear masks at every call
        self.context_term = F.linear(context, weight[:, :arn.context_dim], first.bias)  # [..., H]
        self.input_weight = weight[:, arn.context_dim:]  # [H, L]
        self.layers = [(layer.weight * layer.mask, layer.bias) for layer in arn.layers[1:]]
        self.activation = arn.f
        self.shape = (arn.output_multiplier, arn.input_dim)
        self.permutation = arn.permutation  # what AffineAutoregressive reads of its network
        self.get_permutation = arn.get_permutation

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Pyro's inverse starts from zeros of the default dtype (float32) whatever the network's; its
        # own network promotes them in torch.cat with the context, so the product here is cast as well
        # (a float64 guide's log q at a given z failed as "expected m1 and m2 to have the same dtype").
        hidden = self.activation(F.linear(z.to(self.input_weight.dtype), self.input_weight) + self.context_term)
        for weight, bias in self.layers[:-1]:
            hidden = self.activation(F.linear(hidden, weight, bias))
        out = F.linear(hidden, *self.layers[-1])
        return torch.unbind(out.reshape(out.shape[:-1] + self.shape), -2)

    @staticmethod
    def fits(step) -> bool:
        """``step`` is an IAF step whose network this class computes: a conditional MADE
        without skip connections giving two parameters of L values (mean and log-scale)."""
        arn = getattr(step, "nn", None)
        return (isinstance(step, T.ConditionalAffineAutoregressive) and isinstance(arn, ConditionalAutoRegressiveNN)
                and arn.skip_layer is None and list(arn.param_dims) == [1, 1])


def condition(step, h: torch.Tensor):
    """``step.condition(h)``; without autograd (an evaluation, where a context has many draws)
    an IAF step's network is a :class:`ContextProjectedARN`. With autograd (training) it is
    Pyro's own, so that a training step is the same computation as before."""
    if torch.is_grad_enabled() or not ContextProjectedARN.fits(step):
        return step.condition(h)
    return T.AffineAutoregressive(ContextProjectedARN(step.nn, h), **step.kwargs)


class FlowGuide(PyroModule):
    """q(z | x): ``encoder`` (an :class:`~pyro_vae.nn.Encoder`) gives the base Normal's
    ``(loc, scale)`` ``[..., L]`` and the context ``h`` ``[..., F]``; ``steps`` are
    conditional transforms applied in order. Samples site ``z`` ``[B, L]`` inside
    ``pyro.plate("data", B)``, as the model does."""

    needs_labels = False

    def __init__(self, encoder: nn.Module, steps: nn.ModuleList):
        super().__init__()
        to_pyro_network_(encoder)
        self.encoder = encoder
        self.steps = steps

    def distribution(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(z | x) with batch shape ``[B]`` and event ``[L]``."""
        h = self.encoder.features(x)
        loc, scale = self.encoder.heads(h)
        base = dist.Normal(loc, scale, validate_args=False).to_event(1)
        return dist.TransformedDistribution(base, [condition(step, h) for step in self.steps], validate_args=False)

    def forward(self, x: torch.Tensor) -> None:
        # FullPlate, as the VAE model's: a pyro.plate would record a subsample site that the model
        # lacks (Pyro's ELBOs warn of it).
        with FullPlate("data", x.shape[0], device=x.device):
            pyro.sample("z", self.distribution(x))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(code, scale) ``[..., L]``: the flows applied to the base mean (the code used by
        reconstructions and latent plots) and the base Normal's scale."""
        h = self.encoder.features(x)
        loc, scale = self.encoder.heads(h)
        z = loc
        for step in self.steps:
            z = step.condition(h)(z)
        return z, scale
