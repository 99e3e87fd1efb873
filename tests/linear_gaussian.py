"""Models whose log p(x) is known exactly, written as Pyro programs for the tests.

* Probabilistic PCA: z ~ N(0, I_L), x ~ N(W z + b, sigma^2 I_D); p(x) = N(b, W W^T + sigma^2 I)
  and the posterior p(z | x) is Gaussian in closed form.
* A 1-D latent with Bernoulli pixels, integrated by quadrature.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch


class PPCA:
    def __init__(self, latent_dim=2, data_dim=5, sigma=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(data_dim, latent_dim, generator=g, dtype=torch.float64)
        self.b = torch.randn(data_dim, generator=g, dtype=torch.float64)
        self.sigma = sigma
        self.L, self.D = latent_dim, data_dim

    def sample(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.L, generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + self.sigma * torch.randn(n, self.D, generator=g, dtype=torch.float64)

    def log_marginal(self, x):
        cov = self.W @ self.W.T + self.sigma ** 2 * torch.eye(self.D, dtype=torch.float64)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def posterior(self, x):
        precision = torch.eye(self.L, dtype=torch.float64) + self.W.T @ self.W / self.sigma ** 2
        cov = torch.linalg.inv(precision)
        mean = (x - self.b) @ self.W @ cov.T / self.sigma ** 2
        return mean, cov

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], self.L, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.sigma).to_event(1), obs=x)

    def exact_guide(self, x):
        mean, cov = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(mean, covariance_matrix=cov))

    def poor_guide(self, x, shrink=0.85, scale=1.25):
        """A mean-field guide with a shrunk mean and too-wide scale (ELBO < log p(x))."""
        mean, cov = self.posterior(x)
        std = cov.diagonal().sqrt() * scale
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(mean * shrink, std.expand_as(mean)).to_event(1))


class BernoulliLine:
    """z ~ N(0, 1); x_d ~ Bernoulli(sigmoid(a_d z + c_d)), d = 1..D."""

    def __init__(self, data_dim=6, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.a = 2.0 * torch.randn(data_dim, generator=g, dtype=torch.float64)
        self.c = torch.randn(data_dim, generator=g, dtype=torch.float64)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], dtype=x.dtype), 1.0))
            logits = z.unsqueeze(-1) * self.a + self.c
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x):
        # A crude amortized guide: shift by the number of "on" pixels weighted by a.
        loc = 0.3 * (x * self.a.sign()).sum(-1) / x.shape[-1]
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, torch.full_like(loc, 0.8)))

    def log_marginal_quadrature(self, x, points=40001, bound=12.0):
        z = torch.linspace(-bound, bound, points, dtype=torch.float64)
        logits = z[:, None, None] * self.a + self.c  # [Z, 1, D]
        log_lik = dist.Bernoulli(logits=logits).log_prob(x[None]).sum(-1)  # [Z, N]
        log_joint = log_lik + dist.Normal(0.0, 1.0).log_prob(z)[:, None]
        dz = z[1] - z[0]
        # Trapezoid rule in log space.
        weights = torch.full((points,), math.log(dz), dtype=torch.float64)
        weights[0] = weights[-1] = math.log(dz / 2)
        return torch.logsumexp(log_joint + weights[:, None], 0)
