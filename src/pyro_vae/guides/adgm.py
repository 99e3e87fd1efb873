r"""The ADGM guide (Maaløe et al. 2016): q(a, y, z | x) = q(a | x) q(y | a, x) q(z | a, y, x).

The auxiliary a is drawn first (reparameterized, never enumerated); where y is not given it
is then enumerated in parallel under the classifier q(y | a, x), so ``TraceEnum_ELBO`` sums
the classes exactly for that draw of a, and the code z is drawn given (a, y, x). The
unlabelled bound is

.. math::  \mathcal{U}(x) = \mathbb{E}_{q(a|x)} \Big[ \sum_y q(y|a,x) \big( \mathbb{E}_{q(z|a,y,x)}
           [\log p(x, y, z, a) - \log q(z|a,y,x)] - \log q(y|a,x) \big) - \log q(a|x) \Big];

with y given (a labelled example) the guide is q(a | x) q(z | a, y, x) and the bound the ELBO
of p(x, y, z, a). Predictions use q(y | a, x) at the mean of q(a | x) (deterministic);
the classification loss uses one draw of a (:meth:`ADGMGuide.sample_logits`), an unbiased
estimate of the paper's E_{q(a|x)}[-log q(y | a, x)].
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from torch.nn import functional as F

from pyro_vae.nn import broadcast_cat
from pyro_vae.pyro_modules import to_pyro_network_


class ADGMGuide(PyroModule):
    """``aux_encoder``: x -> (loc, scale) of q(a | x) ``[..., A]`` (an :class:`~pyro_vae.nn.Encoder`);
    ``classifier``: (x, a) -> logits of q(y | a, x) ``[..., K]`` (:func:`~pyro_vae.nn.classifier`
    with ``extra_inputs=A``); ``encoder``: (x, [a, onehot(y)]) -> (loc, scale) of q(z | a, y, x)
    ``[..., L]`` (an Encoder reading the condition with the pixels)."""

    def __init__(self, aux_encoder: torch.nn.Module, classifier: torch.nn.Module, encoder: torch.nn.Module,
                 num_classes: int):
        super().__init__()
        for net in (aux_encoder, classifier, encoder):
            to_pyro_network_(net)
        self.aux_encoder = aux_encoder
        self.classifier = classifier
        self.encoder = encoder
        self.num_classes = num_classes

    def _condition(self, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return broadcast_cat(a, F.one_hot(y, self.num_classes).to(a.dtype))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | a, x) at a = E_q[a | x], ``[..., K]``: the prediction."""
        return self.classifier(x, self.aux_encoder(x)[0])

    def sample_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | a, x) at one reparameterized draw a ~ q(a | x): what the
        classification loss alpha * E_q(a|x)[-log q(y | a, x)] reads."""
        loc, scale = self.aux_encoder(x)
        return self.classifier(x, dist.Normal(loc, scale, validate_args=False).rsample())

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | a, y, x) at a = E_q[a | x]: the code of a labelled image."""
        return self.encoder(x, self._condition(self.aux_encoder(x)[0], y))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.aux_encoder(x)
            a = pyro.sample("a", dist.Normal(loc, scale, validate_args=False).to_event(1))
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x, a)), infer={"enumerate": "parallel"})
            loc, scale = self.encoder(x, self._condition(a, y))
            pyro.sample("z", dist.Normal(loc, scale, validate_args=False).to_event(1))
