r"""M1's latent codes as the data of M2: the stacked model M1+M2 of Kingma et al. (2014).

M1 is a VAE trained on every training image (no labels). Its guide's posterior mean
:math:`c = \mathrm{E}_{q(z_1 | x)}[z_1]` is the code of image x. M2 is then trained on the
codes instead of the pixels: p(y) p(z_2) p(c | y, z_2) with a Gaussian likelihood on c
(one learned sigma per code dimension), q(y | c) q(z_2 | c, y). The codes are kept as a
data set of "images" of shape ``[N, 1, 1, D]``, so the M2 program, its guide, the
semi-supervised trainer and the checkpoints take them unchanged.

Two choices:

* **posterior means, or samples for training** (``--m1-codes``): by default every code is
  fixed once (a deterministic feature of each image); with "sample" the training codes are
  drawn afresh for every batch, z_1 ~ q(z_1 | x), as Kingma et al.'s own code does
  (``learn_yz_x_ss.py`` draws ``normal(mean, exp(logvar / 2))`` per minibatch). Validation
  and test images get one code each, their means, either way;
* **active units only, standardized**: a unit whose posterior mean barely moves with the
  image (``Var_x E[z_j | x] < threshold``, Burda et al. 2016's activity criterion, 0.01)
  carries nothing about x and would let the Gaussian likelihood's sigma collapse on a
  constant; it is dropped. The kept units are shifted and scaled to mean 0 and standard
  deviation 1 over the training codes, so one learned sigma per unit starts at 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.errors import ConfigError

#: Burda et al. (2016): a unit is active when Var_x E[z_j | x] exceeds this.
ACTIVITY_THRESHOLD = 0.01


@torch.no_grad()
def posterior_means(guide, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """E[z | x] of a VAE guide with an ``encoder`` (x -> (loc, scale)) for ``images``
    ``[N, C, H, W]`` -> ``[N, L]``."""
    return torch.cat([guide.encoder(images[start:start + batch_size])[0]
                      for start in range(0, len(images), batch_size)])


@torch.no_grad()
def posterior_scales(guide, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The standard deviations of q(z | x), ``[N, L]``, of a VAE guide with an ``encoder``
    (x -> (loc, scale)) for ``images`` ``[N, C, H, W]``."""
    return torch.cat([guide.encoder(images[start:start + batch_size])[1]
                      for start in range(0, len(images), batch_size)])


def draw_codes(codes: torch.Tensor, scales: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw c ~ N(codes, scales^2) of each code, any shape (both alike): M1's z_1 ~ q(z_1 | x),
    standardized, for a training batch of ``--m1-codes sample``."""
    noise = torch.randn(codes.shape, generator=generator, device=codes.device, dtype=codes.dtype)
    return codes + scales * noise


@dataclass
class CodeScaler:
    """Keeps the active units of a code and standardizes them: c = (m[active] - mean) / std,
    with ``mean`` and ``std`` ``[D]`` over the training codes and ``active`` ``[L]`` bool.
    ``inactive_mean`` ``[L - D]``: the inactive units' training means, where :meth:`invert`
    puts them (None, as in scalers saved before it was kept: 0)."""

    active: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    inactive_mean: torch.Tensor | None = None

    @classmethod
    def fit(cls, train_means: torch.Tensor, threshold: float = ACTIVITY_THRESHOLD) -> "CodeScaler":
        variance = train_means.var(0)
        active = variance > threshold
        if not active.any():
            raise ConfigError(f"the M1 run's encoder has no active unit (every Var_x E[z_j | x] <= {threshold}): "
                              "its codes carry nothing about the images; train M1 longer or with another seed.")
        kept = train_means[:, active]
        return cls(active, kept.mean(0), kept.std(0), train_means[:, ~active].mean(0))

    def __call__(self, means: torch.Tensor) -> torch.Tensor:
        return (means[:, self.active] - self.mean) / self.std

    def scale(self, scales: torch.Tensor) -> torch.Tensor:
        """Standard deviations of q(z | x) ``[N, L]`` -> those of the standardized codes ``[N, D]``
        (the affine map divides them by ``std``; the mean does not move them)."""
        return scales[:, self.active] / self.std

    def invert(self, codes: torch.Tensor) -> torch.Tensor:
        """Standardized codes ``[..., D]`` -> M1 codes ``[..., L]``, the inactive units at their
        training means: the value M1's decoder saw them take, whatever the image (an inactive
        unit's posterior mean hardly moves, Var_x E[z_j | x] below the threshold, but need not sit
        at the prior's mean 0, and 0 would feed the decoder a code it never read)."""
        full = codes.new_zeros(codes.shape[:-1] + self.active.shape)
        if self.inactive_mean is not None:
            full[..., ~self.active] = self.inactive_mean.to(codes)
        full[..., self.active] = codes * self.std + self.mean
        return full

    def to(self, device) -> "CodeScaler":
        moved = None if self.inactive_mean is None else self.inactive_mean.to(device)
        return CodeScaler(self.active.to(device), self.mean.to(device), self.std.to(device), moved)

    def to_dict(self) -> dict:
        inactive = {} if self.inactive_mean is None else {"inactive_mean": self.inactive_mean.tolist()}
        return {"active": self.active.tolist(), "mean": self.mean.tolist(), "std": self.std.tolist(), **inactive}

    @classmethod
    def from_dict(cls, data: dict) -> "CodeScaler":
        inactive = data.get("inactive_mean")  # absent from the codes of runs trained before it was kept
        return cls(torch.tensor(data["active"]), torch.tensor(data["mean"]), torch.tensor(data["std"]),
                   None if inactive is None else torch.tensor(inactive))


def code_dataset(guide, dataset: ImageDataset, threshold: float = ACTIVITY_THRESHOLD) -> tuple[ImageDataset, CodeScaler]:
    """The data set with every image replaced by its standardized M1 code ``[N, 1, 1, D]``
    (labels kept, binarization "none"), and the scaler fitted on the training codes.
    Every split is encoded as it is scored (:meth:`ImageDataset.scored_split`): with dynamic
    binarization the training images are one fixed 0/1 draw, as the validation and test
    images are. Encoding the grey training images instead put the codes M2 trains on about a
    tenth of a code's spread away from those it is selected and tested on, and M1, trained on
    0/1 draws, never saw a grey image."""
    means = {name: posterior_means(guide, dataset.scored_split(name).images) for name in ("train", "valid", "test")}
    scaler = CodeScaler.fit(means["train"], threshold)

    def split(name: str) -> Split:
        return Split(scaler(means[name])[:, None, None, :], getattr(dataset, name).labels)

    codes = replace(dataset, train=split("train"), valid=split("valid"), test=split("test"), binarize="none")
    return codes, scaler


def training_code_scales(guide, dataset: ImageDataset, scaler: CodeScaler) -> torch.Tensor:
    """The standard deviations of the standardized training codes of :func:`code_dataset`,
    ``[N, 1, 1, D]``, in its order: q(z_1 | x)'s, of the same fixed 0/1 draw of the training
    images the means were taken of, scaled as the codes are (:meth:`CodeScaler.scale`)."""
    return scaler.scale(posterior_scales(guide, dataset.scored_split("train").images))[:, None, None, :]


def stacked_label_model(m1_model, m1_guide, scaler: CodeScaler, model, guide):
    """M1+M2 as a labelled generator of images (a :class:`~pyro_vae.inference.fidelity.LabelModel`):
    decode(z_2, y) = M1's mean image at the code c = scaler^{-1}(E[c | z_2, y]);
    encode_style(x, y) = the mean of q(z_2 | c(x), y) with c(x) M1's standardized code of x;
    sample_prior(y) = z_2 ~ N(0, I)."""
    from pyro_vae.inference.fidelity import LabelModel

    def codes_of(x: torch.Tensor) -> torch.Tensor:
        return scaler(posterior_means(m1_guide, x))[:, None, None, :]

    def decode(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        code = model.decode_mean(z, y).flatten(-3)  # [N, D]
        return m1_model.decode_mean(scaler.invert(code))

    return LabelModel(decode=decode, encode_style=lambda x, y: guide.encode(codes_of(x), y)[0],
                      sample_prior=model.sample_prior, num_classes=model.num_classes,
                      modules=(m1_model, m1_guide, model, guide))
