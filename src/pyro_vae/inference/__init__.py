"""Inference: objectives, the training loop, checkpoints and held-out log-likelihood.

It drives any (model, guide) pair; it knows nothing of particular networks.
"""

from pyro_vae.inference.loglik import LogLikelihoodEstimate, importance_log_likelihood
from pyro_vae.inference.objectives import IWAELoss, elbo_terms, make_objective, scale_sites
from pyro_vae.inference.weights import log_importance_weights

__all__ = ["IWAELoss", "LogLikelihoodEstimate", "elbo_terms", "importance_log_likelihood",
           "log_importance_weights", "make_objective", "scale_sites"]
