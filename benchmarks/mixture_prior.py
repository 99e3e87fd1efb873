"""The VampPrior's log-density with its gradient: ``MixtureSameFamily`` over diagonal Normals
against :class:`~pyro_vae.models.priors.DiagonalNormalMixture` (500 draws, as IWAE K=5 at
batch 100, against 500 components of 40 dimensions), alternated, CPU time per call.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/mixture_prior.py
"""

import time

import pyro.distributions as dist
import torch

from pyro_vae.models.priors import DiagonalNormalMixture

COMPONENTS, LATENT, K, BATCH, CALLS = 500, 40, 5, 100, 20


def main() -> None:
    torch.manual_seed(0)
    loc = torch.randn(COMPONENTS, LATENT, requires_grad=True)
    scale = torch.full((COMPONENTS, LATENT), 0.3, requires_grad=True)
    logits = torch.zeros(COMPONENTS)
    z = torch.randn(K, BATCH, LATENT, requires_grad=True)

    def mixture_same_family():
        components = dist.Normal(loc, scale).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=logits), components).expand([BATCH]).log_prob(z)

    def matrix_products():
        return DiagonalNormalMixture(logits, loc, scale, [BATCH]).log_prob(z)

    for candidate in (mixture_same_family, matrix_products) * 2:
        start = time.process_time()
        for _ in range(CALLS):
            candidate().sum().backward()
        print(f"{candidate.__name__:20s} {(time.process_time() - start) / CALLS * 1000:7.1f} ms CPU a call")


if __name__ == "__main__":
    main()
