"""The M2 guide: a classifier q(y | x) and an encoder q(z | x, y)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import PyroModule
from pyro_vae.pyro_modules import to_pyro_network_
from torch.nn import functional as F


class M2Guide(PyroModule):
    """q(y, z | x) = q(y | x) q(z | x, y). Where y is not given it is sampled from the
    classifier with ``enumerate="parallel"``, so ``TraceEnum_ELBO`` sums over the classes
    exactly instead of drawing one."""

    def __init__(self, classifier: torch.nn.Module, encoder: torch.nn.Module, num_classes: int):
        super().__init__()
        to_pyro_network_(classifier)
        to_pyro_network_(encoder)
        self.classifier = classifier
        self.encoder = encoder
        self.num_classes = num_classes

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x), ``[..., num_classes]``."""
        return self.classifier(x)

    def sample_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits the classification loss reads: those of q(y | x) (M2 draws nothing first)."""
        return self.classify(x)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, F.one_hot(y, self.num_classes).to(x.dtype))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classify(x)), infer={"enumerate": "parallel"})
            loc, scale = self.encode(x, y)
            pyro.sample("z", dist.Normal(loc, scale, validate_args=False).to_event(1))
