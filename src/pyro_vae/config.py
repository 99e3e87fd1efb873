"""Run configuration: one dataclass per section, read from TOML, overridden by flags.

A config file has three tables, ``[data]``, ``[model]`` and ``[train]``, whose keys are
the fields below. Every field name is unique across sections, so each one is also a
command-line flag (``latent_dim`` -> ``--latent-dim``). The resolved configuration is
written into the run directory as ``config.toml`` and is what a checkpoint is checked
against on ``--resume``. An option set away from its default where the other options
leave it without effect (``k`` without the IWAE objective, say) is refused by
:meth:`Config.validate` (:func:`ineffective_options`), so config.toml records only values
that were used. ``--help`` describes each field by its ``#:`` comment (or
:data:`FIELD_HELP`) and lists :func:`choices`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from pyro_vae.errors import ConfigError

DATASETS = ("fashion-mnist", "mnist", "mnist-t10k", "binarized-mnist", "idx", "image-folder")
BINARIZATIONS = ("auto", "none", "dynamic", "static", "threshold")
IMAGE_MODES = ("rgb", "grey")
NETWORKS = ("mlp", "conv")
ACTIVATIONS = ("relu", "softplus", "tanh", "elu", "leaky_relu", "gelu", "gated")
SCALE_TRANSFORMS = ("softplus", "exp")
OBJECTIVES = ("elbo", "analytic-kl", "iwae", "iwae-dreg")
MODELS = ("vae", "cvae", "m2", "m1m2", "adgm", "quadrant", "ae", "hvae")
#: The models trained by the semi-supervised M2 bound on a few labels (--labels N).
SEMI_SUPERVISED = ("m2", "m1m2", "adgm")
#: How M1+M2 reads M1's codes of the training images (ModelConfig.m1_codes).
M1_CODES = ("mean", "sample")
ELBO_IMPLEMENTATIONS = ("fast", "pyro")
LABELLED_WEIGHTS = ("natural", "balanced")
#: What chooses the best epoch: "auto" is valid-iwae for the iwae objectives, else valid-elbo.
SELECTIONS = ("auto", "valid-elbo", "valid-iwae", "valid-loglik")


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"
    data_dir: str = ""
    #: "auto" is "dynamic" for the Bernoulli likelihood and "none" for the others; for
    #: --model m1m2, its M1 run's binarization.
    binarize: str = "auto"
    #: image-folder: side of the square images in pixels (shorter side resized, centre cropped).
    image_size: int = 64
    #: image-folder: "rgb" (3 channels) or "grey" (1).
    image_mode: str = "rgb"
    #: image-folder: processes that decode the images (0 = in this process).
    workers: int = 0
    #: image-folder: keep the decoded images in a memory-mapped file under the user cache
    #: (~/.cache/pyro-vae/image-folders) so later runs skip decoding and large folders
    #: are not held in memory.
    cache_images: bool = False
    #: image-folder: leave out unreadable image files (named in a warning) instead of stopping.
    skip_bad_images: bool = False
    #: Use only the first N training examples (0 = all); for quick experiments and tests.
    train_limit: int = 0
    #: --model m2, m1m2 and adgm: how many training labels to keep (balanced across classes, chosen by the seed).
    labels: int = 0

    def validate(self) -> None:
        check_field_types(self)  # set in Python: a NumPy integer became Python's, as config.toml writes only those
        _choice("dataset", self.dataset, DATASETS)
        _choice("binarize", self.binarize, BINARIZATIONS)
        _at_least("train_limit", self.train_limit, 0)
        _between("image_size", self.image_size, 4, 1024)
        _choice("image_mode", self.image_mode, IMAGE_MODES)
        _between("workers", self.workers, 0, 256)
        if self.dataset == "idx" and not self.data_dir:
            raise ConfigError(
                "dataset 'idx' reads your own IDX files: give their folder with --data-dir DIR."
            )
        if self.dataset == "image-folder" and not self.data_dir:
            raise ConfigError("dataset 'image-folder' reads your own images: give their folder with --data-dir DIR.")
        if self.data_dir:  # recorded whole: evaluate, sample, plot and --resume read it again from any folder
            self.data_dir = os.path.abspath(os.path.expanduser(self.data_dir))


@dataclass
class ModelConfig:
    #: "vae", "cvae" (the conditional VAE p(x | z, y)), "m2" (semi-supervised, Kingma
    #: et al. 2014, with --labels N; these two need labelled data) or "quadrant" (a
    #: conditional VAE that completes an image from its given quadrants, Sohn et al. 2015)
    #: or "ae" (the plain autoencoder: the same networks, a point-mass code, no prior; it
    #: reconstructs but has no log p(x) and no prior to sample from) or "m1m2" (M2 trained
    #: on the latent codes of the VAE run given by --m1-run, Kingma et al. 2014's M1+M2)
    #: or "adgm" (M2 with an auxiliary variable a in model and guide, Maaløe et al. 2016)
    #: or "hvae" (two stochastic layers z2 -> z1 -> x with the bottom-up guide q(z1 | x) q(z2 | z1),
    #: Burda et al. 2016; --latent-dim sizes z1, --top-latent-dim z2).
    model: str = "vae"
    #: --model m1m2: the run directory of a trained --model vae on the same data set
    #: (M1); M2 learns on its encoder's posterior means of the images.
    m1_run: str = ""
    #: --model m1m2: M2's training codes: "mean" (E[z_1 | x], fixed) or "sample" (a new draw
    #: z_1 ~ q(z_1 | x) for every batch, as Kingma et al. 2014's code does); validation and
    #: test images are always scored on their means.
    m1_codes: str = "mean"
    #: --model quadrant: how many quadrants are given (top-left, then top-right, then
    #: bottom-left); the others are completed.
    given_quadrants: int = 1
    #: cvae: learn a prior p(z | y) per class instead of N(0, I).
    conditional_prior: bool = False
    #: cvae, m2 and m1m2 with the MLP: the encoder q(z | x, y) reads y with the pixels, not only
    #: at its output heads (the ADGM's encoder always does).
    label_at_encoder_input: bool = False
    latent_dim: int = 20
    #: --model hvae: dimensions of the top stochastic layer z2 (Burda et al. 2016: 50; z1 is --latent-dim).
    top_latent_dim: int = 50
    #: --model hvae: hidden sizes of q(z2 | z1)'s MLP (z1 -> ... -> z2), mirrored in p(z1 | z2)
    #: (Burda et al. 2016: 100,100).
    top_hidden_dims: list[int] = field(default_factory=lambda: [100, 100])
    #: --model adgm: dimensions of the auxiliary variable a (Maaløe et al. 2016 used 100).
    aux_dim: int = 100
    network: str = "mlp"
    #: --model m2: the classifier q(y | x), whatever --network the encoder and decoder use:
    #: "mlp" (layers of hidden_dims) or "conv" (the conv encoder's convolutions of
    #: conv_channels and its one dense layer of hidden_dims' first size, then the class logits).
    #: The supervised baseline is trained with the same classifier.
    classifier_network: str = "mlp"
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256])
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])
    #: conv: batch normalisation after every convolution but the decoder's last.
    batch_norm: bool = False
    activation: str = "relu"
    likelihood: str = "bernoulli"
    #: Standard deviation of the fixed-scale Gaussian likelihood (pixel units); the learned
    #: Gaussians' starting value (above 0.001, their sigma's floor). The other likelihoods have no scale.
    likelihood_scale: float = 0.1
    scale_transform: str = "softplus"
    #: Floor added to the encoder's standard deviation so it never reaches 0.
    min_scale: float = 1e-3
    #: --model vae: the prior p(z): "standard" N(0, I), "mog" (a learned mixture of
    #: --prior-components Gaussians) or "vamp" (the VampPrior: the guide encoder's Normal, before any --flow, at
    #: --pseudo-inputs learned pseudo-inputs). mog and vamp have no closed-form KL.
    prior: str = "standard"
    #: --prior mog: the number K of Gaussians in the mixture (weights, means and scales all learned).
    prior_components: int = 10
    #: --prior vamp: the number K of learned pseudo-inputs u_k, one mixture component each.
    pseudo_inputs: int = 500
    #: --prior vamp: where the pseudo-inputs start: "random" (near 0.05, as in Tomczak &
    #: Welling's code) or "data" (--pseudo-inputs training images drawn by the seed, their
    #: other option; the sensible start for a VampPrior added to a trained VAE by --init-from). A
    #: --init-from source that has a VampPrior keeps its learned pseudo-inputs.
    pseudo_init: str = "random"
    #: --model vae: push q(z | x) through --flow-steps amortized normalizing flows:
    #: "none", "iaf" (inverse autoregressive), "householder" or "planar". Each IAF step's
    #: autoregressive network is Pyro's default, one ReLU layer of 10 x --latent-dim units,
    #: whatever --hidden-dims and --activation (which size the encoder and decoder) say.
    flow: str = "none"
    #: --flow: the number of flow steps, applied in order (each with its own parameters).
    flow_steps: int = 4

    def validate(self) -> None:
        from pyro_vae.likelihoods import LIKELIHOODS  # the registry is the list of names

        check_field_types(self)  # a ModelConfig built in Python: latent_dim=4.5 failed deep inside torch
        _choice("model", self.model, MODELS)
        _choice("m1_codes", self.m1_codes, M1_CODES)
        _between("given_quadrants", self.given_quadrants, 1, 3)
        _between("latent_dim", self.latent_dim, 1, 4096)
        _between("aux_dim", self.aux_dim, 1, 4096)
        _between("top_latent_dim", self.top_latent_dim, 1, 4096)
        if not self.top_hidden_dims or any(not 1 <= h <= 65536 for h in self.top_hidden_dims):
            raise ConfigError("top_hidden_dims must be a non-empty list of positive sizes, e.g. [100, 100].")
        if self.model == "adgm" and self.network != "mlp":
            raise ConfigError("--model adgm is built from MLPs (as in Maaløe et al. 2016); drop --network "
                              f"{self.network}.")
        if self.model == "m1m2" and self.network != "mlp":  # conv layers would halve a 1 x D "image"
            raise ConfigError(f"--network {self.network} has no place in --model m1m2, whose M2 reads M1's codes, a "
                              "vector, not an image; drop --network (M2 on the codes is an MLP).")
        _choice("network", self.network, NETWORKS)
        _choice("classifier_network", self.classifier_network, NETWORKS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("likelihood", self.likelihood, tuple(LIKELIHOODS))
        _choice("scale_transform", self.scale_transform, SCALE_TRANSFORMS)
        if self.activation == "gated" and self.network != "mlp":
            raise ConfigError("activation 'gated' (gated dense layers) is for the MLP; use --network mlp "
                              "or another activation.")
        if self.activation == "gated" and self.model == "m2" and self.classifier_network != "mlp":
            raise ConfigError("activation 'gated' (gated dense layers) is for the MLP; use --classifier-network mlp "
                              "or another activation.")
        if not self.hidden_dims or any(not 1 <= h <= 65536 for h in self.hidden_dims):
            raise ConfigError("hidden_dims must be a non-empty list of positive sizes, e.g. [512, 256].")
        if not self.conv_channels or any(not 1 <= c <= 4096 for c in self.conv_channels):
            raise ConfigError("conv_channels must be a non-empty list of positive sizes, e.g. [32, 64].")
        _positive("likelihood_scale", self.likelihood_scale)
        _positive("min_scale", self.min_scale)
        from pyro_vae.guides.flows import FLOWS
        from pyro_vae.models.priors import PRIORS, PSEUDO_INITS

        _choice("prior", self.prior, PRIORS)
        _between("prior_components", self.prior_components, 1, 10**5)
        _between("pseudo_inputs", self.pseudo_inputs, 1, 10**5)
        _choice("pseudo_init", self.pseudo_init, PSEUDO_INITS)
        _choice("flow", self.flow, FLOWS)
        _between("flow_steps", self.flow_steps, 1, 1000)
        if self.model != "vae" and (self.prior != "standard" or self.flow != "none"):
            keeps = ("has no prior and a point-mass code" if self.model == "ae" else
                     "keeps its own prior and Gaussian guide")
            raise ConfigError(f"--prior and --flow are for --model vae; --model {self.model} {keeps} "
                              "(use --prior standard --flow none).")
        if self.prior == "vamp" and self.batch_norm:
            # The prior runs the guide's encoder on the K pseudo-inputs as a batch of their own: in
            # training its components would be normalised by the pseudo-inputs' statistics, not the
            # data's, and every step would mix them into the running statistics evaluation uses.
            raise ConfigError("--batch-norm true cannot be used with --prior vamp, whose pseudo-inputs would go "
                              "through the encoder's batch normalisation as a batch of their own (other statistics "
                              "than the data's, mixed into the running ones); drop --batch-norm or use --prior mog.")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    #: Multiply the learning rate by this factor after every epoch (1 = constant).
    lr_decay: float = 1.0
    #: Clip the gradients' global norm to this value (0 = no clipping).
    clip_norm: float = 0.0
    objective: str = "elbo"
    #: "fast" (ReparamELBO, same numbers with less overhead) or "pyro" (Pyro's ELBO classes).
    elbo_implementation: str = "fast"
    num_particles: int = 1
    #: Importance samples per example for --objective iwae and iwae-dreg, and of the
    #: validation IWAE bound that --select-by valid-iwae selects by.
    k: int = 5
    #: What chooses checkpoint_best.pt: "valid-elbo"; "valid-iwae" (the importance-weighted
    #: bound with the training K on all validation images); "valid-loglik" (log p(x) by
    #: importance sampling with --select-k samples on --select-examples validation images
    #: drawn once by the seed, with the same draws every epoch; a continuous likelihood's on
    #: dequantized 8-bit images, as evaluate --k scores it); "auto" is valid-iwae for
    #: the iwae objectives and valid-elbo otherwise.
    select_by: str = "auto"
    #: --select-by valid-loglik: importance samples per validation image.
    select_k: int = 100
    #: --select-by valid-loglik: validation images in the fixed random subset (0 = all).
    select_examples: int = 1000
    #: --model m2, m1m2 and adgm: weight alpha of the classifier's cross-entropy on each labelled example,
    #: relative to one example's bound in the objective summed over the data set.
    alpha: float = 20000.0
    #: --model m2, m1m2 and adgm: "natural" weighs the labelled batch by N_labelled / N_train per example,
    #: so each step is an unbiased estimate of the paper's objective summed over the data;
    #: "balanced" counts a labelled batch as much as an unlabelled one.
    labelled_weight: str = "natural"
    #: Weight of the KL term (beta-VAE); 1 is the ELBO. For --model m2, m1m2 and adgm it
    #: weighs the KL of the style z alone (the label's terms keep weight 1).
    beta: float = 1.0
    #: Linear KL warm-up from 0 to beta over this many epochs (0 = none) ...
    kl_warmup_epochs: int = 0
    #: ... or over this many optimizer steps (give one of the two).
    kl_warmup_steps: int = 0
    seed: int = 0
    device: str = "cpu"
    #: Save samples, reconstructions and curves every N epochs (0 = only at the end).
    figure_every: int = 0
    #: Draw those figures (PNGs in the run directory) at all; false skips them and matplotlib's
    #: import (about a sixth of a short CPU job); `pyro-vae plot RUN --kind ...` draws them later.
    figures: bool = True
    #: Also log scalars (every epoch) and image grids (every figure_every epochs) for
    #: TensorBoard under RUN_DIR/tensorboard (needs the optional `tensorboard` package).
    tensorboard: bool = False
    #: Stop when the selection metric (validation ELBO, IWAE bound, importance-sampled log p(x)
    #: with --select-by valid-loglik, or M2's validation accuracy) has not improved for this
    #: many epochs (0 = never stop early).
    patience: int = 0
    #: Also log params, per-epoch metrics, final metrics and figures to MLflow (needs the
    #: optional `mlflow-skinny` package; MLFLOW_TRACKING_URI is honoured, else ./mlflow.db).
    mlflow: bool = False
    #: Start from the parameters of another run's best checkpoint (RUN_DIR) instead of a random
    #: initialisation, e.g. to fine-tune a VAE with --objective iwae-dreg; the optimizer, the
    #: learning-rate schedule and the KL warm-up start afresh. The [model] options must be that run's.
    init_from: str = ""

    def validate(self) -> None:
        check_field_types(self)  # set in Python: a NumPy integer became Python's, as config.toml writes only those
        _between("epochs", self.epochs, 1, 10**6)
        _between("batch_size", self.batch_size, 1, 10**6)
        _positive("learning_rate", self.learning_rate)
        _positive("lr_decay", self.lr_decay)
        _at_least("clip_norm", self.clip_norm, 0)
        _choice("objective", self.objective, OBJECTIVES)
        _choice("elbo_implementation", self.elbo_implementation, ELBO_IMPLEMENTATIONS)
        _between("num_particles", self.num_particles, 1, 10**5)
        _between("k", self.k, 1, 10**5)
        _choice("select_by", self.select_by, SELECTIONS)
        _between("select_k", self.select_k, 1, 10**5)
        _at_least("select_examples", self.select_examples, 0)
        _at_least("beta", self.beta, 0)
        _at_least("alpha", self.alpha, 0)
        _choice("labelled_weight", self.labelled_weight, LABELLED_WEIGHTS)
        _at_least("kl_warmup_epochs", self.kl_warmup_epochs, 0)
        _at_least("kl_warmup_steps", self.kl_warmup_steps, 0)
        if self.kl_warmup_epochs and self.kl_warmup_steps:
            raise ConfigError("give the KL warm-up in epochs or in steps, not both "
                              "(kl_warmup_epochs or kl_warmup_steps).")
        _at_least("figure_every", self.figure_every, 0)
        _at_least("patience", self.patience, 0)
        check_seed(self.seed)
        check_device(self.device)


#: The seeds torch, NumPy and Pyro accept (``pyro.set_rng_seed``: NumPy's range).
SEED_RANGE = (0, 2**32 - 1)


def check_seed(value: int, name: str = "seed") -> None:
    """Refuse a seed outside :data:`SEED_RANGE` (NumPy would raise deep inside training)."""
    _between(name, value, *SEED_RANGE)


def check_device(name: str, given: str | None = None) -> None:
    """Refuse a device name other than ``cpu``, ``cuda`` or ``cuda:N`` (N a GPU index);
    ``given`` is how the caller gave it (default ``--device NAME``; fit says ``device='NAME'``)."""
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:[0-9]+)?", name):
        raise ConfigError(f"{given or f'--device {name}'} is not a device name: the device must be cpu, cuda or "
                          "cuda:N (N the GPU's index, e.g. cuda:0).")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, check_effect: bool = True) -> Config:
        """Check every value and how they combine, and resolve ``binarize = "auto"``.

        With ``check_effect`` (a new configuration) also refuse any option set away from
        its default where it would have no effect (:func:`ineffective_options`), so that a
        run's config.toml never records a value that was not used. A run's own saved
        config.toml is read with ``check_effect=False``: runs written before a rule existed
        still open (their record is what they ran with)."""
        self.data.validate()
        self.model.validate()
        self.train.validate()
        if self.data.binarize == "auto":
            self.data.binarize = self._auto_binarization()
        if self.model.model in SEMI_SUPERVISED and self.data.labels < 1:
            raise ConfigError(f"--model {self.model.model} learns from a few labels: give their number with "
                              "--labels N (e.g. 100).")
        if self.model.model == "m1m2" and not self.model.m1_run:
            raise ConfigError("--model m1m2 trains M2 on the codes of a trained VAE (M1): give its run directory "
                              "with --m1-run RUN (train one with --model vae on the same data set).")
        _check_closed_form_kl(self.model, self.train)
        if self.model.model not in SEMI_SUPERVISED and self.data.labels:
            raise ConfigError("--labels is for --model m2, m1m2 and adgm; the other models use every label or none.")
        if check_effect:
            if self.model.model in SEMI_SUPERVISED and self.train.init_from:
                # its classifier would begin trained on the source's labelled images (another --seed or --labels
                # picks others), and the baseline, a fresh classifier given this run's steps, would not be its match
                raise ConfigError(f"--init-from cannot start a --model {self.model.model} run: its summary reports the "
                                  "test accuracy of a classifier trained on this run's --labels images in this run's "
                                  "steps (beside a supervised baseline given the same), and one begun from "
                                  f"{self.train.init_from} has been trained on that run's labelled images already; "
                                  "continue that run with --resume, or drop --init-from.")
            self.check_effect()
            _check_starting_scale(self.model)
        return self

    def _auto_binarization(self) -> str:
        """``binarize = "auto"``: "dynamic" for the Bernoulli likelihood and "none" for the
        others (binarized-mnist is binary already: the data set loads it as it is). An M1+M2
        run sees the images as its M1 run did (M1's config.toml), whatever its own unused
        ``likelihood``: M2's codes are M1's encodings of the images, and M1 trained on grey
        levels (a continuous likelihood) would otherwise be handed 0/1 draws it never saw.
        An unreadable M1 run falls back to the rule; ``runs.m1_codes`` refuses it then."""
        if self.model.model == "m1m2" and self.model.m1_run:
            m1_config = Path(self.model.m1_run) / "config.toml"
            if m1_config.is_file():
                try:
                    return Config.load(m1_config).validate(check_effect=False).data.binarize
                except ConfigError:
                    pass
        binary = self.model.likelihood == "bernoulli" and self.data.dataset != "binarized-mnist"
        return "dynamic" if binary else "none"

    def check_effect(self, keys=None) -> None:
        """Raise :class:`ConfigError` for the first option (of ``keys``, ``section.name``;
        default all) that is set but would have no effect, or would do the wrong thing."""
        for key, sentence in ineffective_options(self):
            if keys is None or key in keys:
                raise ConfigError(sentence)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "the configuration") -> Config:
        """Build a config from nested tables, naming unknown keys and wrong types."""
        return cls().update(raw, source)

    def update(self, raw: dict[str, Any], source: str = "the configuration") -> Config:
        """Set the keys of nested tables ``raw`` (as read from TOML) and only those."""
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            name = sorted(unknown)[0]
            if name == "sweep":  # a sweep's config file given to train
                raise ConfigError(f"{source} has a [sweep] table, which `pyro-vae sweep --config {source}` reads; "
                                  "a single run reads only [data], [model] and [train].")
            raise ConfigError(f"{source}: unknown table [{name}]{_suggest(name, SECTIONS)}")
        for section, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: '{section}' must be a table ([{section}]).")
            for key, value in table.items():
                self.set(f"{section}.{key}", value, source=source)
        return self

    def set(self, dotted: str, value: Any, source: str = "the configuration") -> None:
        """Set ``section.key`` (or a bare key, unique across sections) to a typed value."""
        section, key = self._locate(dotted, source)
        obj = getattr(self, section)
        setattr(obj, key, coerce(f"{section}.{key}", value, field_types(type(obj))[key], source))

    def _locate(self, dotted: str, source: str) -> tuple[str, str]:
        if "." in dotted:
            section, key = dotted.split(".", 1)
            if section not in SECTIONS:
                raise ConfigError(f"{source}: unknown table [{section}]{_suggest(section, SECTIONS)}")
            known = field_types(SECTIONS[section])
            if key not in known:
                raise ConfigError(f"{source}: unknown key '{key}' in [{section}]{_suggest(key, known)}")
            return section, key
        for section, cls in SECTIONS.items():
            if dotted in field_types(cls):
                return section, dotted
        every = [k for cls in SECTIONS.values() for k in field_types(cls)]
        raise ConfigError(f"{source}: unknown option '{dotted}'{_suggest(dotted, every)}")

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls().update_from(path)

    def update_from(self, path: str | Path) -> Config:
        """Set the keys that the TOML file at ``path`` names (the others keep their values)."""
        path = Path(path)
        try:
            with open(path, "rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; check the path.") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML ({err}); fix the syntax.") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} cannot be read ({err}).") from None
        return self.update(raw, source=str(path))

    def dumps(self) -> str:
        return tomli_w.dumps(self.to_dict())


def _takes_binary_data(likelihood: str) -> bool:
    from pyro_vae.likelihoods import LIKELIHOODS

    cls = LIKELIHOODS[likelihood]
    return getattr(cls, "data_kind", "binary" if likelihood == "bernoulli" else "") == "binary"


def show_value(value: Any) -> str:
    """A value as one would type it after its flag."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def ineffective_options(config: Config, every: bool = False) -> list[tuple[str, str]]:
    """Every option that ``config`` sets away from its default where it has no effect (or,
    for ``binarize``, the wrong one), as ``(section.name, the sentence that refuses it)``;
    with ``every``, also those left at their default (what the run does not use, though its
    config.toml records it, see :func:`unused_options`).

    Only values that differ from the default count: a default is what every run records
    for an option it does not use, so it claims nothing; a value someone chose does. (A
    chosen value equal to the default records exactly what an untouched one would.)
    """
    from pyro_vae.likelihoods import LIKELIHOODS

    data, model, train = config.data, config.model, config.train
    defaults = Config()
    found: list[tuple[str, str]] = []

    def unused(key: str, where: str, fix: str) -> None:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if every or value != getattr(getattr(defaults, section), name):
            found.append((key, f"--{name.replace('_', '-')} {show_value(value)} has no effect {where}; {fix}."))

    if model.model != "m1m2":
        unused("model.m1_run", f"with --model {model.model} (it names M1 for --model m1m2)",
               "drop it or choose --model m1m2")
        unused("model.m1_codes", f"with --model {model.model} (it says how --model m1m2 reads M1's codes)",
               "drop it or choose --model m1m2")
    else:
        unused("model.likelihood", "with --model m1m2 (its codes get a Gaussian likelihood with one learned sigma "
               "per unit)", "drop it")
    if model.model in SEMI_SUPERVISED:
        m2 = f"with --model {model.model}, which trains its own bound (Kingma et al. 2014: the ELBO with the label summed out)"
        for key in ("train.objective", "train.kl_warmup_epochs", "train.kl_warmup_steps",
                    "train.num_particles", "train.k", "train.elbo_implementation"):
            unused(key, m2, "drop it")  # --beta applies: it weighs the KL of z alone (SemiSupervisedLoss)
        # SemiSupervisedTrainer keeps the epoch of best validation accuracy of q(y | x), whatever the rule
        for key in ("train.select_by", "train.select_k", "train.select_examples"):
            unused(key, f"with --model {model.model}, which keeps the epoch of best validation accuracy of "
                   "q(y | x)", "drop it")
    else:
        for key in ("train.alpha", "train.labelled_weight"):
            unused(key, f"with --model {model.model} (it weighs M2's labelled examples)",
                   f"drop it or choose --model {', '.join(SEMI_SUPERVISED[:-1])} or {SEMI_SUPERVISED[-1]}")
        if train.objective.startswith("iwae"):
            unused("train.num_particles", f"with --objective {train.objective}, whose samples per example are --k",
                   "drop it and set --k")
            unused("train.elbo_implementation", f"with --objective {train.objective} (it picks how the ELBO is "
                   "computed)", "drop it")
        elif train.select_by != "valid-iwae":  # there K is the selecting bound's (runs._selection)
            unused("train.k", f"with --objective {train.objective} (it is the number of importance samples of "
                   "--objective iwae and --select-by valid-iwae)", "drop it or choose --objective iwae or "
                   "--select-by valid-iwae")
    if model.model == "ae":
        ae = "with --model ae, which has no KL term and a deterministic code"
        for key in ("train.beta", "train.kl_warmup_epochs", "train.kl_warmup_steps", "train.num_particles"):
            unused(key, ae, "drop it")
        for key in ("model.scale_transform", "model.min_scale"):  # PointMassGuide reads the encoder's loc alone
            unused(key, f"{ae} (its point-mass code ignores the encoder's scale)", "drop it")
        # with no KL term both ELBOs, and Pyro's and the fast implementation, are the reconstruction term
        unused("train.elbo_implementation", f"{ae} (both implementations compute its reconstruction term alike)",
               "drop it")
        if train.objective == "analytic-kl":
            found.append(("train.objective", f"--objective analytic-kl has no effect {ae} (there is no KL to "
                          "compute in closed form); choose --objective elbo."))
        if train.select_by == "valid-elbo":
            unused("train.select_by", f"{ae} (its ELBO is the reconstruction term it selects by anyway)",
                   "drop it")
        elif train.select_by != "auto":  # the trainer would fail after the run directory was made
            found.append(("train.select_by", f"--select-by {train.select_by} needs log p(z), and --model ae has "
                          "no prior, so no IWAE bound or log p(x); drop it (it keeps the epoch of best validation "
                          "reconstruction log p(x | code))."))
        if train.objective.startswith("iwae"):
            found.append(("train.objective", f"--objective {train.objective} has no effect {ae} (its K importance "
                          "weights are all equal); choose --objective elbo."))
    if train.beta == 0:  # a warm-up from 0 to 0 leaves the KL weight at 0 throughout
        for key in ("train.kl_warmup_epochs", "train.kl_warmup_steps"):
            unused(key, "with --beta 0 (it ramps the KL weight up to beta)", "drop it or give --beta above 0")
    if train.kl_warmup_steps == 1:  # linear_warmup gives step 0 the weight beta * (0 + 1) / 1
        unused("train.kl_warmup_steps", "(a warm-up over one step gives that first step the whole KL weight beta)",
               "drop it or give 2 steps or more")
    if model.model != "hvae":
        for key in ("model.top_latent_dim", "model.top_hidden_dims"):
            unused(key, f"with --model {model.model} (it sizes the top layer z2 of --model hvae)",
                   "drop it or choose --model hvae")
    if model.model != "adgm":
        unused("model.aux_dim", f"with --model {model.model} (it sizes the auxiliary variable a of --model adgm)",
               "drop it or choose --model adgm")
    if model.model != "cvae":
        unused("model.conditional_prior", f"with --model {model.model} (the learned class prior p(z | y) is the "
               "conditional VAE's)", "drop it or choose --model cvae")
    if model.model != "quadrant":
        unused("model.given_quadrants", f"with --model {model.model}", "drop it or choose --model quadrant")
    if not (model.model in ("cvae", "m2", "m1m2") and model.network == "mlp"):
        unused("model.label_at_encoder_input", f"with --model {model.model} --network {model.network} (it is for "
               "the MLP encoder of cvae, m2 and m1m2)", "drop it")
    if not train.figures:
        unused("train.figure_every", "with --figures false (no figure is drawn)", "drop it or drop --figures false")
    if model.model != "m2":
        unused("model.classifier_network", f"with --model {model.model} (it is the classifier q(y | x) of "
               "--model m2)", "drop it or choose --model m2")
    conv_classifier = model.model == "m2" and model.classifier_network == "conv"
    if model.network != "conv" and not conv_classifier:
        # M2 has a second network that can be convolutional: name that way out too.
        fix = "drop it or choose --network conv" + (" or --classifier-network conv" if model.model == "m2" else "")
        for key in ("model.conv_channels", "model.batch_norm"):
            unused(key, f"with --network {model.network}", fix)
    elif model.network == "conv" and (model.model not in SEMI_SUPERVISED or conv_classifier) \
            and len(model.hidden_dims) > 1:
        unused("model.hidden_dims", "beyond its first size with --network conv (one dense layer between the "
               "convolutions and the code)", "give one size, e.g. --hidden-dims 512")
    if model.model == "m1m2":  # not "choose --likelihood gaussian": --likelihood is refused there too
        unused("model.likelihood_scale", "with --model m1m2 (its codes' Gaussian likelihood learns one sigma per "
               "unit, starting at 1, the codes' standardized spread)", "drop it")
    elif not getattr(LIKELIHOODS[model.likelihood], "uses_scale", False):
        unused("model.likelihood_scale", f"with --likelihood {model.likelihood} (it is the Gaussian likelihoods' "
               "sigma)", "drop it or choose --likelihood gaussian")
    if model.prior != "mog":
        unused("model.prior_components", f"with --prior {model.prior} (it sizes the mixture of --prior mog)",
               "drop it or choose --prior mog")
    if model.prior != "vamp":
        unused("model.pseudo_inputs", f"with --prior {model.prior} (it sizes the VampPrior)",
               "drop it or choose --prior vamp")
        unused("model.pseudo_init", f"with --prior {model.prior} (it starts the VampPrior's pseudo-inputs)",
               "drop it or choose --prior vamp")
    if model.flow == "none":
        unused("model.flow_steps", "with --flow none", "drop it or choose a flow, e.g. --flow iaf")
    if train.select_by != "valid-loglik":
        for key in ("train.select_k", "train.select_examples"):
            unused(key, f"with --select-by {train.select_by} (it is for --select-by valid-loglik)",
                   "drop it or choose --select-by valid-loglik")
    if data.dataset != "image-folder":
        for key in ("data.image_size", "data.image_mode", "data.workers", "data.cache_images",
                    "data.skip_bad_images"):
            unused(key, f"with --dataset {data.dataset} (it is for --dataset image-folder)", "drop it")
    if data.dataset == "binarized-mnist" and data.binarize in ("dynamic", "static", "threshold"):
        found.append(("data.binarize", f"--binarize {data.binarize} has no effect with --dataset binarized-mnist "
                      "(its pixels are 0/1 already, a fixed draw); drop it or give --binarize none."))
    elif data.dataset == "binarized-mnist" and every:  # auto or none: recorded, but no part of the run
        found.append(("data.binarize", "--binarize has no effect with --dataset binarized-mnist (its pixels are "
                      "0/1 already, a fixed draw)."))
    elif data.binarize in ("dynamic", "static", "threshold") and not _takes_binary_data(model.likelihood):
        found.append(("data.binarize", f"--binarize {data.binarize} makes 0/1 pixels, but --likelihood "
                      f"{model.likelihood} models grey levels; choose --binarize none, or --likelihood bernoulli "
                      "for binary pixels."))
    return found


def unused_options(config: Config) -> set[str]:
    """The options (``section.name``) that have no effect in a run of ``config``, whatever
    their values: recorded at their defaults in its config.toml, but not used (the ELBO's
    ``train.k``, M2's ``train.objective``, M1+M2's ``model.likelihood``)."""
    return {key for key, _ in ineffective_options(config, every=True)}


def field_help(cls: type) -> dict[str, str]:
    """Each field's description: its ``#:`` comment in the class body (the one source the
    code and ``--help`` share), else :data:`FIELD_HELP`."""
    notes: dict[str, str] = {}
    pending: list[str] = []
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):  # no source (a frozen build): the table alone
        lines = []
    names = [f.name for f in fields(cls)]
    for line in lines:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        name = text.split(":", 1)[0].strip()
        if name in names and pending:
            # a comment split over two fields ends the first with "..." and starts the second so
            note = " ".join(pending).strip()
            note = note.removesuffix("...").rstrip() if note.endswith(" ...") else note
            notes[name] = note.removeprefix("...").lstrip() if note.startswith("... ") else note
        pending = []
    return {name: FIELD_HELP.get(name) or notes.get(name, "") for name in names}


def choices(name: str) -> tuple[str, ...] | None:
    """The allowed values of option ``name`` where they are a fixed set (else None)."""
    if name == "likelihood":
        from pyro_vae.likelihoods import LIKELIHOODS

        return tuple(LIKELIHOODS)
    return CHOICES.get(name)


#: The allowed values of each option with a fixed set of them (``--help`` lists these).
CHOICES = {"dataset": DATASETS, "binarize": BINARIZATIONS, "image_mode": IMAGE_MODES, "model": MODELS,
           "network": NETWORKS, "classifier_network": NETWORKS, "activation": ACTIVATIONS,
           "scale_transform": SCALE_TRANSFORMS,
           "objective": OBJECTIVES, "elbo_implementation": ELBO_IMPLEMENTATIONS,
           "labelled_weight": LABELLED_WEIGHTS, "select_by": SELECTIONS, "prior": ("standard", "mog", "vamp"),
           "pseudo_init": ("random", "data"), "flow": ("none", "iaf", "householder", "planar"),
           "m1_codes": M1_CODES}

#: Descriptions of the fields that have no ``#:`` comment of their own.
FIELD_HELP = {
    "dataset": "the data set (idx and image-folder read your own files from --data-dir)",
    "data_dir": "where the data set's files are (default: found in the usual places or downloaded)",
    "binarize": "how grey pixels become the 0/1 pixels the Bernoulli likelihood needs: dynamic (redrawn as "
                "Bernoulli(pixel) in every batch), static (drawn once), threshold (pixel > 0.5), none; auto is "
                "dynamic for bernoulli and none for the other likelihoods and for binarized-mnist (0/1 already); "
                "for --model m1m2, its M1 run's",
    "latent_dim": "dimensions of the code z",
    "network": "encoder and decoder: fully connected (mlp) or convolutional (conv)",
    "hidden_dims": "hidden layer sizes of the MLP, e.g. 512,256 (conv: the one dense layer's size)",
    "conv_channels": "--network conv: channels of each convolution, e.g. 32,64",
    "activation": "the networks' nonlinearity",
    "likelihood": "the observation model p(x | z) (bernoulli needs 0/1 pixels)",
    "scale_transform": "how the encoder's output becomes a positive standard deviation",
    "epochs": "passes over the training data",
    "batch_size": "examples per optimizer step",
    "learning_rate": "Adam's step size",
    "objective": "what training maximises: the ELBO (Monte Carlo KL), the ELBO with an analytic KL, or "
                 "the importance-weighted bound with --k samples (iwae-dreg: its doubly reparameterized gradient)",
    "num_particles": "samples of z per example for the two ELBOs",
    "seed": "seeds the initialisation, batch order and binarization",
    "device": "cpu, cuda or cuda:N",
    "kl_warmup_steps": "linear KL warm-up from 0 to beta over this many optimizer steps instead of epochs "
                       "(0 = none; give one of the two)",
}


#: The largest float32 (torch.finfo(torch.float32).max), written out: this module does not import torch.
FLOAT32_MAX = 3.4028234663852886e38


def _check_starting_scale(model: ModelConfig) -> None:
    """Refuse, in a new configuration, a ``likelihood_scale`` at or below a learned sigma's floor
    (softplus(raw) + floor): the sigma would start at the floor, not at the value config.toml
    records. A saved run's config is read as it ran (its sigma is in its checkpoint), and a
    sweep's point is refused rather than set back to the default as an option of no effect is."""
    from pyro_vae.likelihoods import LIKELIHOODS

    floor = LIKELIHOODS[model.likelihood].scale_floor
    if LIKELIHOODS[model.likelihood].uses_scale and model.likelihood_scale > FLOAT32_MAX:
        # the float32 sigma is inf: an infinite loss (fixed sigma) or torch.full's overflow (learned)
        raise ConfigError(f"--likelihood-scale {show_value(model.likelihood_scale)} is beyond float32's largest "
                          f"number ({FLOAT32_MAX:.4g}), so sigma would be infinite; give a smaller one.")
    if LIKELIHOODS[model.likelihood].uses_scale and model.likelihood_scale <= floor:
        raise ConfigError(f"--likelihood-scale {show_value(model.likelihood_scale)} cannot be the starting sigma of "
                          f"--likelihood {model.likelihood}, which is softplus(raw) + {show_value(floor)}, always "
                          f"above {show_value(floor)} (it would start there); give a --likelihood-scale above "
                          f"{show_value(floor)}.")


def _check_closed_form_kl(model: ModelConfig, train: TrainConfig) -> None:
    """--objective analytic-kl needs KL(q || p) in closed form: a Gaussian guide and a
    prior that has one. Otherwise refuse (rather than silently switch to Monte Carlo)."""
    from pyro_vae.models.priors import prior_has_closed_form_kl

    if train.objective == "iwae-dreg" and model.flow == "planar":
        raise ConfigError("--objective iwae-dreg evaluates log q at a given z, which needs an invertible flow; "
                          "planar flows are not: use --flow iaf or householder, or --objective iwae.")
    if train.objective != "analytic-kl":
        return
    if model.model == "hvae" and train.elbo_implementation == "pyro":
        raise ConfigError("--objective analytic-kl with --elbo-implementation pyro (TraceMeanField_ELBO) would take "
                          "KL(q(z1 | x) || p(z1 | z2)) in closed form at a z2 drawn from q(z2 | z1), a biased ELBO "
                          "for --model hvae; drop --elbo-implementation pyro (the fast ELBO keeps z1's term Monte "
                          "Carlo) or use --objective elbo.")
    if not prior_has_closed_form_kl(model.prior):
        raise ConfigError(f"--objective analytic-kl needs KL(q || p) in closed form, which the '{model.prior}' "
                          "prior does not have; use --objective elbo (Monte Carlo KL) or iwae.")
    if model.flow != "none":
        raise ConfigError(f"--objective analytic-kl needs KL(q || p) in closed form, which a '{model.flow}' "
                          "flow guide does not have; use --objective elbo (Monte Carlo KL) or iwae.")


def field_types(cls: type) -> dict[str, Any]:
    hints = {f.name: f.type for f in fields(cls)}
    # ``from __future__ import annotations`` stores types as strings; map them back.
    table = {"int": int, "float": float, "str": str, "bool": bool, "list[int]": list}
    return {name: table.get(t, t) if isinstance(t, str) else t for name, t in hints.items()}


def check_field_types(obj) -> None:
    """A ConfigError naming the first field of the dataclass ``obj`` whose value is not of the
    field's type: a whole number for an int (not 4.5, "4" or True), a number for a float, true
    or false for a bool, a string for a str, a list or tuple of whole numbers for a list. A
    configuration read from TOML or flags is converted by :func:`coerce` and always passes; one
    built in Python (``ModelConfig(latent_dim=4.5)``) failed deep inside torch or with
    "'<=' not supported between instances of 'int' and 'str'"."""
    from pyro_vae.counts import is_whole_number as whole

    checks = {int: (whole, "a whole number"),
              float: (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool), "a number"),
              bool: (lambda v: isinstance(v, bool), "true or false"),
              str: (lambda v: isinstance(v, str), "a string"),
              list: (lambda v: isinstance(v, (list, tuple)) and all(whole(item) for item in v),
                     "a list of whole numbers")}
    for name, kind in field_types(type(obj)).items():
        if kind in checks:
            valid, expected = checks[kind]
            value = getattr(obj, name)
            if not valid(value):
                raise ConfigError(f"{name} must be {expected}, not {value!r}.")
            if kind is int and type(value) is not int:  # a NumPy integer as Python's (config.toml writes it)
                setattr(obj, name, int(value))
            elif kind is list and any(type(item) is not int for item in value):
                setattr(obj, name, type(value)(int(item) for item in value))


def coerce(name: str, value: Any, kind: type, source: str) -> Any:
    """Convert ``value`` (from TOML or a flag string) to ``kind`` or say why not."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if not math.isfinite(out):
                raise ValueError
            return out
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if kind is list:
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            if not isinstance(value, list):
                raise ValueError
            return [coerce(name, v, int, source) for v in value]
    except (ValueError, TypeError, OverflowError):
        pass
    else:
        raise AssertionError(f"unsupported field type {kind}")
    expected = {bool: "true or false", int: "a whole number", float: "a finite number",
                str: "a string", list: "a list of whole numbers"}[kind]
    where = source if source.startswith("--") else f"{source}: {name}"
    raise ConfigError(f"{where} must be {expected}, not {value!r}.")


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; valid: {', '.join(sorted(options))}."  # ends the sentence


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        close = difflib.get_close_matches(value, list(options), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "."
        raise ConfigError(f"unknown {name} '{value}' (choose from {', '.join(options)}){hint}")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, not {value}.")


def _between(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}.")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, not {value}.")
