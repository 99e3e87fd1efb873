"""Figures from a trained model: samples, reconstructions, the latent space, interpolation,
latent arithmetic, the prior-vs-posterior check and training curves.

Every function takes tensors or a (model, guide) pair and a path, draws on a
:class:`matplotlib.figure.Figure` of its own (matplotlib's object-oriented API, rendered by
the Agg canvas) and writes a PNG (or PDF, by the suffix). Nothing here touches pyplot's
global state, so importing pyro_vae leaves the user's backend (a notebook's inline one, say)
as it was.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import os
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.patches
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyro_vae.outputs import check_output, make_folder

#: Figures are saved at this resolution with their own size (no tight cropping), so a
#: figure of figsize (w, h) inches is exactly (100 w) x (100 h) pixels.
DPI = 100
#: A latent dimension whose mean KL(q(z_d | x) || p(z_d)) is below this (nats) is "inactive".
INACTIVE_KL = 0.01


def _drawn_in_evaluation_mode(function):
    """Draw with every ``torch.nn.Module`` among the arguments (in ``entries``' tuples, and those a
    :class:`~pyro_vae.inference.fidelity.LabelModel` argument reads) in
    evaluation mode and without autograd, each handed back in the mode it came in: a model left
    in training mode (a loop of one's own never calls ``.eval()``) decoded its figures with
    batch statistics and moved its batch-norm running statistics, so drawing changed the model
    (:func:`pyro_vae.inference.programs.evaluation_mode`)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from pyro_vae.inference.programs import evaluation_mode

        from pyro_vae.inference.fidelity import LabelModel

        values = [*args, *kwargs.values()]
        values += [item for value in values if isinstance(value, (list, tuple))
                   for entry in value if isinstance(entry, (list, tuple)) for item in entry]
        values += [module for value in values if isinstance(value, LabelModel) for module in value.modules]
        with torch.no_grad(), evaluation_mode(*(value for value in values if isinstance(value, torch.nn.Module))):
            return function(*args, **kwargs)
    return wrapper


def check_count(name: str, value, least: int = 1) -> None:
    """A ValueError naming ``name`` unless ``value`` is a whole number of at least ``least``
    (a count of images, steps or columns: 0 divided by zero or drew an empty figure)."""
    from pyro_vae.counts import is_whole_number

    if not is_whole_number(value) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}.")


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """A ValueError unless ``images`` holds at least one image (an empty batch failed deep in torch)."""
    if not torch.is_tensor(images) or images.dim() < 1 or images.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image, not {tuple(getattr(images, 'shape', ()))}.")


def check_images_fit(model, guide, images: torch.Tensor, name: str = "images") -> None:
    """:func:`check_images`, then that ``images`` are finite and of the shape, dtype and pairing
    the model and guide read (:func:`~pyro_vae.inference.loglik.check_examples_fit_programs`):
    one sentence where torch said "mat1 and mat2 shapes cannot be multiplied", and NaN pixels
    are refused rather than drawn; and in the support of the model's likelihood, as ``fit`` and
    ``importance_log_likelihood`` check it (grey levels drawn through a Bernoulli model were
    encoded as inputs it never reads)."""
    from pyro_vae.errors import DataError
    from pyro_vae.inference.loglik import check_examples_fit_programs

    check_images(images, name)
    if images.is_floating_point() and not torch.isfinite(images).all():
        raise DataError(f"the {name} contain NaN or infinite values; clean or drop those images.")
    check_examples_fit_programs(model, guide, images, f"the {name}")
    likelihood = getattr(model, "likelihood", None)
    if likelihood is not None and hasattr(likelihood, "check_support"):
        likelihood.check_support(images, f"the tensor of {name}")  # a singular subject: "... has grey-level pixels"


def check_same_length(what: str, values, images_name: str, n: int) -> None:
    """A ValueError unless ``values`` has one entry per image (a mismatch was torch's "The shape
    of the mask [5] ... does not match" deep in an index)."""
    if values is not None and len(values) != n:
        raise ValueError(f"{what} has {len(values)} entries for {n} {images_name}; give one per image.")


def check_label_used(model, label=None, labels=None) -> None:
    """Refuse a class label given to a model without one (it would be ignored without a word)."""
    if not getattr(model, "num_classes", 0) and (label is not None or labels is not None):
        from pyro_vae.errors import ConfigError

        given = f"label={label}" if label is not None else "labels"
        raise ConfigError(f"{given} has no effect: this model has no class label; leave it out, or give a label "
                          "model (cvae, m2, adgm, m1m2).")


def check_drawn_by(figure: str, *programs, labelled: bool = False, completes: bool = False) -> None:
    """Refuse a model or guide that figure ``figure`` cannot draw, in a sentence naming the figures
    that draw it (a CVAE's guide given to plot_latent failed with "encode() missing 1 required
    positional argument: 'y'", a quadrant model given to plot_samples with an AttributeError):
    the figures of codes z ~ q(z | x) and decoded z read no label and complete nothing
    (``labelled`` and ``completes`` false); ``labelled``: a generator with a class label;
    ``completes``: quadrant completion's model."""
    from pyro_vae.errors import ConfigError

    for program in programs:
        has_label, completing = bool(getattr(program, "num_classes", 0)), hasattr(program, "complete")
        if labelled and not has_label:
            raise ConfigError(f"the {figure} figure decodes codes with every class label, and this model has none; "
                              "give a label model's generator (label_model(model, guide) of cvae, m2 or adgm).")
        if completes and not completing:
            raise ConfigError(f"the {figure} figure is for quadrant completion (--model quadrant), and this model "
                              "completes nothing; draw plot_samples or plot_reconstructions.")
        if not labelled and has_label:
            raise ConfigError(f"the {figure} figure encodes and decodes codes z without a class label, and this "
                              "model or guide has one (cvae, m2, adgm, m1m2); draw plot_samples, plot_style_transfer "
                              "or plot_reconstructions(labels=...).")
        if not completes and completing:
            raise ConfigError(f"the {figure} figure is not drawn for quadrant completion, which decodes a code with "
                              "the given quadrants; draw plot_completions.")


def check_class_label(label, num_classes: int) -> None:
    """A ValueError unless ``label`` is a class number of the model, 0 to ``num_classes`` - 1
    (12 or -1 failed in torch's one_hot, 2.5 was drawn as class 2 and titled class 2.5)."""
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < num_classes:
        raise ValueError(f"label must be a class number from 0 to {num_classes - 1}, not {label!r}.")


def check_class_labels(labels, num_classes: int, n: int, images_name: str = "images") -> None:
    """A ValueError unless a conditional model's ``labels`` are given, one whole class number
    (0 to ``num_classes`` - 1) per image (missing, short or out-of-range labels failed in torch)."""
    if labels is None:
        raise ValueError(f"this model reads each image's class: give labels, one class number from 0 to "
                         f"{num_classes - 1} per image.")
    check_same_length("labels", labels, images_name, n)
    if not torch.is_tensor(labels) or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a tensor of whole class numbers (torch.long), not "
                         f"{getattr(labels, 'dtype', type(labels).__name__)}.")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < num_classes):
        raise ValueError(f"labels must be class numbers from 0 to {num_classes - 1}; these run from "
                         f"{int(labels.min())} to {int(labels.max())}.")


def image_grid(images: torch.Tensor, ncol: int, pad: int = 1) -> torch.Tensor:
    """Tile ``images`` ``[N, C, H, W]`` (values in [0, 1]) into one ``[H', W', C]`` array."""
    check_count("ncol", ncol)
    check_images(images)
    if images.dim() != 4:  # flat [N, 784] vectors (a tutorial decoder's) failed as "not enough values to unpack"
        raise ValueError(f"images must be [N, C, H, W] (N images of C channels, H x W pixels), not of shape "
                         f"{tuple(images.shape)}; a decode_mean of flat vectors must return them as images, "
                         "e.g. .view(-1, 1, 28, 28).")
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    nrow = math.ceil(n / ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid.permute(1, 2, 0)


def _show(ax, grid: torch.Tensor, title: str) -> None:
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.numpy(), interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])


def _subplots(nrows: int = 1, ncols: int = 1, **figure_options):
    """``(figure, axes)`` as ``pyplot.subplots`` returns them, on a figure of its own that
    pyplot does not know of (so no global figure is opened and none needs closing)."""
    squeeze = figure_options.pop("squeeze", True)
    fig = _figure(**figure_options)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _figure(**figure_options) -> Figure:
    fig = Figure(**figure_options)
    FigureCanvasAgg(fig)  # renders PNG and PDF alike, whatever backend the user has chosen
    return fig


#: The constrained layout's padding around the figure's edge (and half its gap between
#: panels), inches: matplotlib's ``figure.constrained_layout.w_pad`` / ``h_pad`` default.
_PAD = 0.04167
#: The constrained layout's places in the 64-sample figure (6 x 6.4 inches), inches: the
#: panel's top margin, and the room above the (square) grid, where the title sits.
_SAMPLES_TOP, _ABOVE_SAMPLES = 0.09217, 0.26692


def _margins_in_inches(fig, left: float = _PAD, right: float = _PAD, bottom: float = _PAD, top: float = _PAD,
                       wspace: float = 0.0) -> None:
    """Place a figure's grid of panels by margins and a gap between panels given in inches:
    fixed places, where a constrained layout draws the figure once more to measure its texts
    (about a third of a simple figure's time; every train run draws two such figures, issue #16)."""
    width, height = fig.get_size_inches()
    columns = fig.axes[0].get_subplotspec().get_gridspec().ncols if fig.axes else 1
    panel = (width - left - right - (columns - 1) * wspace) / columns
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace / panel)


def check_figure_path(path: Path) -> None:
    """Refuse, before anything is drawn, a figure path whose extension matplotlib cannot write
    (``x.txt``, or ``x`` with none): the extension picks the format."""
    formats = FigureCanvasAgg.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        from pyro_vae.errors import ConfigError

        found = f"extension .{suffix}" if suffix else "no extension"
        raise ConfigError(f"the figure {path} has {found}; give -o a name ending in one of "
                          f"{', '.join('.' + f for f in sorted(formats))} (the extension picks the format).")


def check_figure_output(path: Path, option: str = "-o") -> None:
    """:func:`check_figure_path`, and that ``path`` can be written (a missing folder is made
    when the figure is saved; see :mod:`pyro_vae.outputs`): before anything is drawn."""
    check_figure_path(path)
    check_output(path, option)


def _save(fig, path: Path) -> Path:
    """Write the figure to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    check_figure_path(path)
    make_folder(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=DPI)
        os.replace(tmp, path)
    except OSError as err:  # a full disk or read-only directory: one sentence, the old figure kept
        from pyro_vae.errors import WriteError
        from pyro_vae.inference.checkpoint import write_failure_message

        raise WriteError(write_failure_message(path, err, path.exists())) from err
    finally:
        with contextlib.suppress(OSError):  # a read-only file system refuses even this (EROFS)
            tmp.unlink(missing_ok=True)
    return path


def sample_count(model, n: int | None, label: int | None = None) -> int:
    """How many images :func:`plot_samples` draws: ``n``, by default 64. A conditional model
    without a ``label`` draws one row per class, all rows alike, so ``n`` must be a multiple of
    its C classes (else a ConfigError naming the two nearest multiples); by default the most rows
    of 64 images allow, C * max(1, 64 // C) (60 for 10 classes)."""
    if n is not None:
        check_count("n", n)
    classes = getattr(model, "num_classes", 0)
    if not classes or label is not None:
        return 64 if n is None else n
    if n is None:
        return classes * max(1, 64 // classes)
    if n % classes:
        from pyro_vae.errors import ConfigError

        below, above = n // classes * classes, (n // classes + 1) * classes
        raise ConfigError(f"{n} samples do not fill the figure's rows, one per class of this conditional model, "
                          f"as {n} is not a multiple of its {classes} classes; give n (-n) "
                          f"{f'{below} or ' if below else ''}{above}, or one label (--label) to draw {n} of that "
                          "class.")
    return n


@_drawn_in_evaluation_mode
def plot_samples(model, path: Path, n: int | None = None, device="cpu", title: str | None = None,
                 label: int | None = None, class_names: tuple[str, ...] = ()) -> Path:
    """A grid of E[x | z] for ``n`` draws z ~ p(z) (the model's prior; default 64). For a
    conditional model, of E[x | z, y] with z ~ p(z | y) and y = ``label``, or without a label
    every class in turn by rows: exactly ``n`` images, n / C per class, ``n`` a multiple of the
    C classes (default C * (64 // C): 60 for 10 classes), see :func:`sample_count`."""
    check_label_used(model, label=label)
    if hasattr(model, "complete"):
        check_drawn_by("samples", model)
    if label is not None:
        check_class_label(label, model.num_classes)
    n = sample_count(model, n, label)
    ncol = math.ceil(math.sqrt(n))
    if getattr(model, "num_classes", 0):
        if label is not None:
            y = torch.full((n,), label, dtype=torch.long, device=device)
            default = f"{n} samples of class {_class_name(label, class_names)} (decoder means)"
        else:  # every class, one row each, named: n samples in all
            per_class = n // model.num_classes
            rows = []
            for c in range(model.num_classes):
                y = torch.full((per_class,), c, dtype=torch.long, device=device)
                rows.append((_class_name(c, class_names), model.decode_mean(model.sample_prior(y), y)))
            return _rows_figure(rows, path, title or f"{per_class} samples of each class\n(decoder means, "
                                "one class per row)", "z ~ p(z | y), one column per draw")
        images = model.decode_mean(model.sample_prior(y), y)
    else:
        codes = model.sample_prior(n) if hasattr(model, "sample_prior") else torch.randn(n, model.latent_dim)
        images = model.decode_mean(codes.to(device))
        default = f"{n} samples from the prior (decoder means)"
        if not getattr(model, "has_marginal_likelihood", True):
            default = f"{n} decoded draws z ~ N(0, I) (an autoencoder has no prior of its own)"
    grid = image_grid(images, ncol)
    width, height = 6, 6 * math.ceil(n / ncol) / ncol + 0.4
    # A caller's title (of any length) gets the constrained layout; the default one-line title
    # gets the layout's places without its extra draw: the grid keeps its aspect, centred in its
    # panel, and the panel's top leaves the title the room above the grid that the layout leaves
    # it in the 64-sample figure of every train run (where these are the layout's places).
    fig, ax = _subplots(figsize=(width, height), **({"layout": "constrained"} if title else {}))
    if not title:
        grid_height = (width - 2 * _PAD) * grid.shape[0] / grid.shape[1]
        _margins_in_inches(fig, top=max(_SAMPLES_TOP, 2 * _ABOVE_SAMPLES - (height - _PAD - grid_height)))
    _show(ax, grid, title or default)
    return _save(fig, path)


@_drawn_in_evaluation_mode
def plot_style_transfer(generator, images: torch.Tensor, labels: torch.Tensor, path: Path,
                        class_names: tuple[str, ...] = ()) -> Path:
    """A labelled generator's style grid: the top row holds test images; below, one row per
    class decodes each image's code z = ``generator.encode_style(x, y)`` with that class instead
    of its own, so one column keeps one "handwriting style" drawn as every class. ``generator``:
    a :class:`~pyro_vae.inference.fidelity.LabelModel` (``label_model(model, guide)`` for the
    CVAE, M2 and the ADGM; M1+M2's decodes through M1)."""
    check_images(images)
    check_drawn_by("style", generator, labelled=True)
    check_class_labels(labels, generator.num_classes, len(images))
    codes = generator.encode_style(images, labels)
    rows = [("input", images)]
    for c in range(generator.num_classes):
        y = torch.full((len(images),), c, dtype=torch.long, device=images.device)
        rows.append((class_names[c] if c < len(class_names) else str(c), generator.decode(codes, y)))
    return _rows_figure(rows, path, "Style transfer: each column keeps one image's code z, each row sets the class",
                        "one column per test image")


@_drawn_in_evaluation_mode
def plot_reconstructions(model, guide, images: torch.Tensor, path: Path, title: str | None = None,
                         labels: torch.Tensor | None = None, what: str = "inputs") -> Path:
    """Inputs (left, titled ``what``: which images of which split) beside E[x | z = loc(x)]
    (right), one pair per row block; a conditional model encodes and decodes with the images'
    ``labels`` (its title says the label is given: M2 and the ADGM do not infer it here)."""
    check_label_used(model, labels=labels)
    if hasattr(model, "complete"):
        check_drawn_by("reconstructions", model)
    check_images_fit(model, guide, images)
    conditional = bool(getattr(model, "num_classes", 0))
    if conditional:
        check_class_labels(labels, model.num_classes, len(images))
        recon = model.decode_mean(guide.encode(images, labels)[0], labels)
    else:
        recon = model.decode_mean(guide.encode(images)[0])
    n = len(images)
    ncol = min(8, n)
    # A suptitle's room is the constrained layout's to find; without one the panels' places are
    # fixed (the layout's own, without its extra draw: each panel's title sits in the room that
    # the grid's equal aspect leaves above it in a figure of this height).
    fig, axes = _subplots(1, 2, figsize=(8, 4 * math.ceil(n / ncol) / ncol + 0.6),
                          **({"layout": "constrained"} if title else {}))
    if not title:
        _margins_in_inches(fig, wspace=2 * _PAD)
    _show(axes[0], image_grid(images, ncol), what)
    # M2's and the ADGM's label is the image's own here, not inferred by q(y | x): the title says so
    _show(axes[1], image_grid(recon, ncol), "reconstructions (decoder mean, label given)" if conditional
          else "reconstructions (decoder mean at the code)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


@_drawn_in_evaluation_mode
def plot_completions(model, images: torch.Tensor, path: Path, n: int = 6) -> Path:
    """Quadrant completion: for each test image (a column) the original, the given part
    alone, then ``n`` completions with z ~ p(z | x_g)."""
    check_images(images), check_count("n", n)
    check_drawn_by("completions", model, completes=True)
    completions = model.complete(images, n)
    rows = [("original", images), ("given", model.condition(images))]
    rows += [(f"sample {i + 1}", completions[i]) for i in range(n)]
    return _rows_figure(rows, path, "Completions of the missing quadrants, z ~ p(z | given part)",
                        "one column per test image")


def _class_name(index: int, class_names: tuple[str, ...]) -> str:
    return class_names[index] if index < len(class_names) else str(index)


# -- latent-space tools (pure tensor maths, tested numerically) ----------------------------

def interpolate_codes(z_a: torch.Tensor, z_b: torch.Tensor, steps: int, method: str = "linear") -> torch.Tensor:
    """``steps`` codes from ``z_a`` to ``z_b`` (``[L]`` each) -> ``[steps, L]``, endpoints included.

    ``linear``: (1 - t) z_a + t z_b. ``spherical`` (slerp): along the great circle between
    the two directions, with the norm interpolated linearly, which keeps intermediate codes
    at the typical radius of a Gaussian prior instead of cutting through its low-density
    centre.
    """
    check_count("steps", steps, 2)  # both endpoints
    if z_a.shape != z_b.shape:
        raise ValueError(f"the two codes have shapes {tuple(z_a.shape)} and {tuple(z_b.shape)}; interpolate between "
                         "codes of one latent space.")
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device)[:, None]
    if method == "linear":
        return (1 - t) * z_a + t * z_b
    if method != "spherical":
        raise ValueError(f"unknown interpolation {method!r}; use linear or spherical")
    norm_a, norm_b = z_a.norm(), z_b.norm()
    u_a, u_b = z_a / norm_a, z_b / norm_b
    omega = torch.arccos((u_a * u_b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    if omega.abs() < 1e-6:
        return (1 - t) * z_a + t * z_b
    direction = (torch.sin((1 - t) * omega) * u_a + torch.sin(t * omega) * u_b) / torch.sin(omega)
    return direction * ((1 - t) * norm_a + t * norm_b)


def attribute_vector(codes: torch.Tensor, has_attribute: torch.Tensor) -> torch.Tensor:
    """Mean code of the examples with the attribute minus the mean code of those without.
    ``codes`` ``[N, L]``, ``has_attribute`` ``[N]`` bool -> ``[L]``."""
    check_same_length("has_attribute", has_attribute, "codes", len(codes))
    has_attribute = has_attribute.bool()
    if has_attribute.all() or not has_attribute.any():
        raise ValueError("an attribute vector needs examples both with and without the attribute")
    return codes[has_attribute].mean(0) - codes[~has_attribute].mean(0)


def apply_attribute(code: torch.Tensor, vector: torch.Tensor, alphas) -> torch.Tensor:
    """``code + alpha * vector`` for each alpha -> ``[len(alphas), L]``; alpha = 0 is the code."""
    if code.shape != vector.shape:
        raise ValueError(f"the code has shape {tuple(code.shape)} and the attribute vector {tuple(vector.shape)}; "
                         "give a vector of the code's latent space.")
    alphas = torch.as_tensor(list(alphas), dtype=code.dtype, device=code.device)[:, None]
    return code + alphas * vector


def principal_components(codes: torch.Tensor, k: int = 2) -> torch.Tensor:
    """Project ``codes`` ``[N, L]`` on their first ``k`` principal axes -> ``[N, k]``."""
    check_count("k", k)
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:k].T


# -- figures ---------------------------------------------------------------------------

def _rows_figure(rows: list[tuple[str, torch.Tensor]], path: Path, title: str, xlabel: str = "",
                 column_labels: list[str] | None = None) -> Path:
    """One row of images per ``(name, images [N, C, H, W])``, the name left of its row;
    ``column_labels`` (one per column) go under the last row."""
    width = max(5.0, 1.0 * rows[0][1].shape[0] + 1)  # room for the title over a few columns
    fig, axes = _subplots(len(rows), 1, layout="constrained", figsize=(width, 1.3 * len(rows) + 0.5))
    axes = [axes] if len(rows) == 1 else list(axes)
    for ax, (label, images) in zip(axes, rows):
        _show(ax, image_grid(images, images.shape[0]), "")
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    if column_labels:
        width, pad = rows[-1][1].shape[-1], 1  # image_grid's layout: pad, image, pad, image, ...
        axes[-1].set_xticks([pad + i * (width + pad) + (width - 1) / 2 for i in range(len(column_labels))],
                            column_labels)
    if xlabel:
        axes[-1].set_xlabel(xlabel)
    fig.suptitle(title)
    return _save(fig, path)


@_drawn_in_evaluation_mode
def plot_interpolation(model, guide, x_a: torch.Tensor, x_b: torch.Tensor, path: Path, steps: int = 10,
                       names: tuple[str, str] = ("the first image", "the second image")) -> Path:
    """Decoded codes between two inputs ``[C, H, W]``: a linear and a spherical row; ``names``
    say which two images they are ("test image 0", a file name) in the title."""
    check_count("steps", steps, 2)
    check_drawn_by("interpolation", model, guide)
    check_images_fit(model, guide, torch.stack([x_a, x_b]), "two images")
    z_a, z_b = guide.encode(x_a[None])[0][0], guide.encode(x_b[None])[0][0]
    rows = [(method, model.decode_mean(interpolate_codes(z_a, z_b, steps, method)))
            for method in ("linear", "spherical")]
    return _rows_figure(rows, path, f"Interpolation between {names[0]} and {names[1]} (codes = encoder means)",
                        f"t from 0 ({names[0]}) to 1 ({names[1]})")


@_drawn_in_evaluation_mode
def plot_arithmetic(model, guide, images: torch.Tensor, has_attribute: torch.Tensor, examples: torch.Tensor,
                    path: Path, attribute: str, alphas=(-2, -1, 0, 1, 2)) -> Path:
    """Rows ``decode(code + alpha * v)`` for a few ``examples``, with ``v`` the attribute
    vector of ``images`` (mean code with the attribute minus mean code without)."""
    check_images(examples, "examples")
    check_drawn_by("arithmetic", model, guide)
    check_same_length("has_attribute", has_attribute, "images", len(images))
    codes = _codes(guide, images)
    vector = attribute_vector(codes, has_attribute)
    rows = []
    for i, x in enumerate(examples):  # the input first, then its code moved along the vector
        code = guide.encode(x[None])[0][0]
        moved = model.decode_mean(apply_attribute(code, vector, alphas))
        rows.append((f"example {i + 1}", torch.cat([x[None], moved])))
    return _rows_figure(rows, path, f"Latent arithmetic: code + alpha x ('{attribute}' vector)",
                        "the input image, then the decoded code + alpha x vector (alpha = 0: its reconstruction)",
                        ["input"] + [f"alpha={a:g}" for a in alphas])


def _codes(guide, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([guide.encode(images[i:i + batch_size])[0] for i in range(0, len(images), batch_size)])


def class_colours(num_classes: int) -> list:
    """One colour per class, all different: tab10 or tab20 up to 20 classes, beyond that
    evenly spaced hues of turbo (tab20 repeated its colours, so classes 0 and 20 of EMNIST's
    letters looked alike)."""
    if num_classes <= 20:
        cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
        return [cmap(c) for c in range(num_classes)]
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(c / (num_classes - 1)) for c in range(num_classes)]


def _scatter_codes(ax, points: torch.Tensor, labels: torch.Tensor | None, class_names: tuple[str, ...],
                   legend: bool = True, fontsize: int = 7) -> None:
    """``points`` ``[N, 2]`` on ``ax``, one colour and legend entry per class in ``labels``."""
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.5)
        return
    labels = labels.cpu()
    colours = class_colours(max(int(labels.max()) + 1, len(class_names)))
    for c in labels.unique().tolist():
        chosen = labels == c
        name = class_names[c] if c < len(class_names) else str(c)
        ax.scatter(points[chosen, 0], points[chosen, 1], s=3, alpha=0.6, color=colours[c], label=name)
    if legend:
        ax.legend(markerscale=4, fontsize=fontsize, loc="best", title="class")


#: Radius of the disc holding 95% of N(0, I_2)'s mass: sqrt of the chi-square(2) 95% quantile.
PRIOR_95_RADIUS = math.sqrt(-2 * math.log(0.05))


@_drawn_in_evaluation_mode
def plot_compare(entries: list[tuple[str, object, object]], images: torch.Tensor, labels: torch.Tensor | None,
                 path: Path, class_names: tuple[str, ...] = (), samples: int = 36, seed: int = 0) -> Path:
    """Models side by side, one column per ``(title, model, guide)`` of ``entries``: on top
    the codes of ``images`` (encoder means, coloured by class; the first two principal
    components beyond a 2-D latent) with the circle that holds 95% of N(0, I)'s mass; below
    (``samples`` > 0) the decoder means of the same ``samples`` draws z ~ N(0, I) through each
    decoder, the course figure of an autoencoder beside a VAE. A title's first line names the
    model (it heads both panels); further lines (numbers, say) go on the top panel only."""
    check_images(images)
    if not entries:
        raise ValueError("plot_compare needs at least one (title, model, guide) entry.")
    check_drawn_by("compare", *(program for _, model, guide in entries for program in (model, guide)))
    check_count("samples", samples, 0)
    rows = 2 if samples else 1
    fig, axes = _subplots(rows, len(entries), layout="constrained", figsize=(5.5 * len(entries), 5 * rows + 0.3),
                          squeeze=False)
    latent_dims = {model.latent_dim for _, model, _ in entries}
    z = torch.randn(samples, max(latent_dims), generator=torch.Generator().manual_seed(seed)) if samples else None
    for col, (title, model, guide) in enumerate(entries):
        codes = _codes(guide, images).cpu()
        ax = axes[0][col]
        points = codes if codes.shape[1] == 2 else principal_components(codes)
        _scatter_codes(ax, points, labels, class_names, legend=col == len(entries) - 1)
        if codes.shape[1] == 2:
            ax.add_patch(matplotlib.patches.Circle((0, 0), PRIOR_95_RADIUS, fill=False, ls="--", color="black",
                                                   label="95% of N(0, I)"))
            ax.set_xlabel("z1"), ax.set_ylabel("z2")
            what = "dashed: 95% of N(0, I)"
        else:  # no circle: N(0, I)'s 95% region in a projection of codes is not that circle
            ax.set_xlabel("principal component 1"), ax.set_ylabel("principal component 2")
            what = f"their first two principal components of {codes.shape[1]}"
        ax.set_title(f"{title}\ncodes of {len(codes)} test images ({what})", fontsize=9)
        if samples:
            device = next(iter(model.parameters())).device if hasattr(model, "parameters") else "cpu"
            drawn = model.decode_mean(z[:, :model.latent_dim].to(device))
            _show(axes[1][col], image_grid(drawn, math.ceil(math.sqrt(samples))),
                  f"{title.splitlines()[0]}\ndecoded z ~ N(0, I) (the same {samples} draws)")
            axes[1][col].title.set_fontsize(10)
    return _save(fig, path)


@_drawn_in_evaluation_mode
def plot_latent(guide, images: torch.Tensor, labels: torch.Tensor | None, path: Path,
                class_names: tuple[str, ...] = (), what: str = "images") -> Path:
    """The codes (encoder means) of ``images`` coloured by class: the codes themselves for a 2-D
    latent, their first two principal components otherwise. ``what`` names the images in the
    title ("Latent codes of 500 test images" with ``what="test images"``)."""
    check_images(images)
    check_drawn_by("latent", guide)
    check_same_length("labels", labels, "images", len(images))
    codes = _codes(guide, images).cpu()
    if codes.shape[1] == 2:
        points, axis = codes, "z"
    else:
        points, axis = principal_components(codes), "principal component "
    fig, ax = _subplots(layout="constrained", figsize=(7, 6))
    _scatter_codes(ax, points, labels, class_names, fontsize=8)
    ax.set_xlabel(f"{axis}1" if axis == "z" else f"{axis}1")
    ax.set_ylabel(f"{axis}2" if axis == "z" else f"{axis}2")
    how = "" if codes.shape[1] == 2 else f" (PCA of {codes.shape[1]} dimensions)"
    ax.set_title(f"Latent codes of {len(codes)} {what}{how}")
    return _save(fig, path)


@_drawn_in_evaluation_mode
def plot_manifold(model, path: Path, n: int = 20, device="cpu", codes: torch.Tensor | None = None) -> Path:
    """For a 2-D latent: decoded images on an n x n grid of the prior's quantiles 5%..95%
    (the prior N(0, I): a learned prior or a two-layer model's p(z1) is refused), or, given
    ``codes`` ``[N, 2]`` (an autoencoder's, which has no prior), on an evenly spaced grid from
    the 1st to the 99th percentile of each coordinate of the codes."""
    check_count("n", n)
    check_drawn_by("manifold", model)
    if model.latent_dim != 2:
        raise ValueError(f"the manifold plot needs a 2-D latent; this model has {model.latent_dim} dimensions "
                         "(train with --latent-dim 2)")
    prior = getattr(model, "latent_prior", None)
    if codes is None and (getattr(model, "hierarchical", False)
                          or not (prior is None or getattr(prior, "closed_form_kl", False))):
        from pyro_vae.errors import ConfigError

        raise ConfigError("the manifold figure decodes the quantiles of N(0, I) as the prior's, and this model's "
                          "prior is another (a learned mixture, a VampPrior, or a two-layer model's p(z1)); give "
                          "codes=... (codes of images) to span those instead, or draw plot_samples.")
    if codes is None:
        q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n))
        q1, q2, title = q, q, "Latent manifold: decoded prior quantiles 5%..95%"
    else:
        low, high = torch.quantile(codes.float().cpu(), torch.tensor([0.01, 0.99]), dim=0)
        q1, q2 = (torch.linspace(float(low[d]), float(high[d]), n) for d in (0, 1))
        title = "Latent manifold: decoded grid over the codes' 1st..99th percentiles"
    grid = torch.stack(torch.meshgrid(q1, q2.flip(0), indexing="xy"), -1).reshape(-1, 2).to(device)
    images = model.decode_mean(grid)
    fig, ax = _subplots(layout="constrained", figsize=(8, 8))
    _show(ax, image_grid(images, n, pad=0), title)
    side = images.shape[-1]
    every = max(1, n // 5)  # about five ticks per axis, at the centres of the decoded images
    shown = list(range(0, n, every)) + ([n - 1] if (n - 1) % every else [])
    centres = [i * side + (side - 1) / 2 for i in shown]
    ax.set_xticks(centres, [f"{q1[i]:.2f}" for i in shown])
    ax.set_yticks(centres, [f"{q2.flip(0)[i]:.2f}" for i in shown])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    return _save(fig, path)


@_drawn_in_evaluation_mode
def plot_prior_check(guide, images: torch.Tensor, path: Path, max_dims: int = 16, prior=None) -> Path:
    """Each latent dimension's aggregate posterior (codes drawn from q(z|x) over the data)
    against the prior's marginal, and a bar per dimension saying whether it is in use.
    ``guide.encode`` must give q(z | x)'s own diagonal Normal (not a flow guide's base scale).

    With the standard prior (``prior`` None or :class:`StandardNormalPrior`) the reference
    curve is N(0, 1) and the bars are the mean KL(q(z_d|x) || N(0, 1)) in nats: dimensions
    below ``INACTIVE_KL`` are inactive (posterior collapse). A learned prior (a mixture,
    the VampPrior) has no per-dimension closed-form KL, and comparing with N(0, 1) would
    call a well-fitted model mismatched; there the reference histogram is drawn from the
    prior itself (``prior.sample``), and the bars are Burda et al.'s (2016) activity
    statistic A_d = Var_x(E_q[z_d | x]), which needs no prior: inactive below 0.01.
    """
    check_images(images), check_count("max_dims", max_dims)
    check_drawn_by("prior-check", guide)
    if getattr(guide, "hierarchical", False):  # its code z1 has p(z1 | z2) as prior: the CLI refuses these runs too
        from pyro_vae.errors import ConfigError

        raise ConfigError("the prior check compares each dimension of q(z | x) with the prior's marginal, and this "
                          "two-layer guide's code z1 has the prior E_p(z2)[p(z1 | z2)], which it cannot draw; look "
                          "at its codes with plot_latent instead.")
    locs, scales = zip(*(guide.encode(images[i:i + 1000]) for i in range(0, len(images), 1000)))
    loc, scale = torch.cat(locs).cpu(), torch.cat(scales).cpu()
    draws = loc + scale * torch.randn_like(loc)
    standard = prior is None or getattr(prior, "closed_form_kl", False)
    if standard:
        usage = (0.5 * (scale ** 2 + loc ** 2 - 1) - torch.log(scale)).mean(0)
        usage_name, usage_label = "KL", "mean KL (nats, log scale)"
        threshold_label = f"{INACTIVE_KL:g} nats: inactive below (grey bars)"
        reference = None
    else:
        usage = loc.var(0) if len(loc) > 1 else torch.zeros(loc.shape[1])
        usage_name, usage_label = "activity", "Var_x E[z_d | x] (log scale)"
        threshold_label = f"{INACTIVE_KL:g}: inactive below (grey bars; Burda et al. 2016)"
        param = next(prior.parameters(), None)
        reference = prior.sample(len(loc), loc if param is None else loc.to(param.device)).cpu()
    dims = min(max_dims, loc.shape[1])
    order = torch.argsort(usage, descending=True)[:dims]
    cols = 4
    rows = (dims + cols - 1) // cols
    fig = _figure(layout="constrained", figsize=(12, 2.2 * rows + 3))
    grid = fig.add_gridspec(rows + 1, cols)
    xs = torch.linspace(-4, 4, 200)
    pdf = torch.exp(-0.5 * xs ** 2) / math.sqrt(2 * math.pi)
    for i, d in enumerate(order.tolist()):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        # The range covers the draws too: a dimension whose codes all lie beyond +-4 would
        # otherwise give an empty, NaN-density histogram.
        span = (min(-4.0, float(draws[:, d].min())), max(4.0, float(draws[:, d].max())))
        ax.hist(draws[:, d].numpy(), bins=50, range=span, density=True, alpha=0.6, label="q(z) aggregate")
        if reference is None:
            ax.plot(xs, pdf, color="black", lw=1, label="N(0, 1)")
            ax.set_title(f"z{d}: KL {usage[d]:.2f} nats", fontsize=9)
        else:
            ax.hist(reference[:, d].numpy(), bins=50, range=span, density=True, histtype="step",
                    color="black", lw=1, label="p(z) (learned prior)")
            ax.set_title(f"z{d}: activity {usage[d]:.2f}", fontsize=9)
        ax.set_yticks([])
        if i == 0:
            ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[rows, :])
    total = loc.shape[1]
    active = usage >= INACTIVE_KL
    # A log scale keeps the threshold visible beside values of several nats; the floor keeps
    # an exactly collapsed dimension (0) on the axis.
    heights = usage.clamp(min=INACTIVE_KL / 10).numpy()
    ax.bar(range(total), heights, color=["tab:blue" if a else "tab:grey" for a in active.tolist()])
    ax.set_yscale("log")
    ax.set_ylim(INACTIVE_KL / 10, max(1.0, float(heights.max())) * 2)
    ax.axhline(INACTIVE_KL, color="red", lw=1.2, ls="--", label=threshold_label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.6, total - 0.4)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel(usage_label)
    ax.legend(fontsize=8)
    inactive = int((~active).sum())
    drawn = (f"histograms of all {total} dimensions" if dims == total
             else f"histograms of the {dims} of {total} dimensions with the largest {usage_name}")
    against = "N(0, 1)" if reference is None else "the learned prior"
    fig.suptitle(f"Aggregate posterior vs {against} ({inactive} of {total} dimensions inactive; {drawn})")
    return _save(fig, path)


#: The VAE curves' margins (fractions of the 11 x 4 inch figure) and gap between its panels
#: (a fraction of a panel's width), wide enough for tick labels of up to five characters ("-1234").
_CURVES_MARGINS = dict(left=0.065, right=0.935, bottom=0.13, top=0.92, wspace=0.32)


def _curves_figure():
    """The VAE curves' two panels side by side, 11 x 4 inches, with fixed margins that leave room
    for the tick labels, titles and the right panel's twin axis: a constrained layout draws the
    figure once more to measure them, 45% of this figure's time (0.63 against 0.35 s of CPU
    on the benchmark machine), and every train run draws it (issue #16)."""
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    fig.subplots_adjust(**_CURVES_MARGINS)
    return fig, axes


def _y_axis_room(ax) -> float:
    """Inches that ``ax``'s y tick labels, ticks and axis label take beside it, measured from the
    tick labels its locator and formatter will draw (font metrics, no drawing of the figure)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    axis = ax.yaxis
    low, high = sorted(ax.get_ylim())
    ticks = [t for t in axis.get_major_locator()() if low <= t <= high]
    font = FontProperties(size=matplotlib.rcParams["ytick.labelsize"])
    widest = max((text_to_path.get_text_width_height_descent(label, font, ismath=False)[0]
                  for label in axis.get_major_formatter().format_ticks(ticks)), default=0.0)
    label_size = FontProperties(size=matplotlib.rcParams["axes.labelsize"]).get_size_in_points()
    points = (widest + matplotlib.rcParams["ytick.major.size"] + matplotlib.rcParams["ytick.major.pad"]
              + matplotlib.rcParams["axes.labelpad"] + 1.2 * label_size)
    return points / 72


def _widen_curves_margins(fig, left_panel, right_panel, twin) -> None:
    """Widen the curves' fixed margins and gap where their tick labels need more room than
    :data:`_CURVES_MARGINS` leaves (long numbers: "-12345.5" of an 8-bit likelihood's ELBO),
    so no axis label is cut off at the figure's edge or runs into the other panel."""
    width = fig.get_size_inches()[0]
    left = max(_CURVES_MARGINS["left"], (_y_axis_room(left_panel) + _PAD) / width)
    right = min(_CURVES_MARGINS["right"], 1 - (_y_axis_room(twin) + _PAD) / width)
    span = (right - left) * width  # two panels and the gap between them, inches
    default_gap = _CURVES_MARGINS["wspace"] * span / (2 + _CURVES_MARGINS["wspace"])
    gap = max(default_gap, _y_axis_room(right_panel) + 2 * _PAD)
    fig.subplots_adjust(left=left, right=right, wspace=gap / ((span - gap) / 2))


def plot_curves(history: list[dict], path: Path, objective: str | None = None, quantity: str = "log p(x)") -> Path:
    """The training objective (``train_objective``, named ``objective`` in the legend where
    given: "IWAE bound K=5", ...) and the validation ELBO (named with the ``quantity`` it
    bounds where that is not log p(x): "validation ELBO of log p(x | y)"), and the validation
    reconstruction and KL, by epoch; for a semi-supervised run, the training objective (named
    alike: M2's, with its classification term, is no bound) and the classifier's accuracies.
    ``history``: the rows of ``metrics.csv`` (``FitResult.history``), or a :class:`~pyro_vae.fit.FitResult`
    itself, whose ``train_objective_name`` then names the objective unless ``objective`` is given."""
    if hasattr(history, "history") and hasattr(history, "train_objective_name"):  # a FitResult (no import: no Pyro)
        objective = objective or history.train_objective_name or None
        history = history.history
    if not history:
        raise ValueError("the history holds no epochs: train at least one before plotting the curves.")
    epochs = [row["epoch"] for row in history]
    if "valid_accuracy" in history[0]:  # its long legend needs the constrained layout
        fig, (left, right) = _subplots(1, 2, layout="constrained", figsize=(11, 4))
        # With alpha > 0 the M2 objective adds alpha x log q(y | x): no bound, so the legend says what it is.
        left.plot(epochs, [row["train_objective"] for row in history],
                  label=textwrap.fill(f"train: {objective or 'the training objective'}", 60))
        left.set_xlabel("epoch")
        left.set_ylabel("nats per example")
        left.set_title("Training objective")
        left.legend(fontsize="small")
        for key, name in (("valid_accuracy", "validation"), ("test_accuracy", "test")):
            if key not in history[0]:  # runs since issue 14 score the test split once, at the end
                continue
            right.plot(epochs, [100 * row[key] for row in history], label=name)
        right.set_xlabel("epoch")
        right.set_ylabel("accuracy of q(y | x), %")
        right.set_title("Classification accuracy")
        right.legend()
        _whole_epochs(left, right)
        return _save(fig, path)
    fig, (left, right) = _curves_figure()
    # a long name ("IWAE bound K=5 with the KL weight warmed up to beta=1 over 10 epochs") on
    # several lines, so the legend stays inside its panel
    name = textwrap.fill(f"train: {objective or 'the training objective'}", 36)
    left.plot(epochs, [row["train_objective"] for row in history], label=name)
    bound = ""
    if quantity != "log p(x)":  # a conditional model's run: the trainer (and Pyro) is loaded already
        from pyro_vae.inference.train import bound_of

        bound = bound_of(quantity)
    stderr = [row.get("valid_elbo_stderr") for row in history]
    if all(isinstance(se, numbers.Real) and math.isfinite(se) for se in stderr):  # metrics.csv records it
        left.errorbar(epochs, [row["valid_elbo"] for row in history], yerr=stderr, capsize=3,
                      label=textwrap.fill(f"validation ELBO{bound} ± s.e. over the validation images", 36))
    else:  # a run written before the standard errors were recorded
        left.plot(epochs, [row["valid_elbo"] for row in history], label=f"validation ELBO{bound}")
    left.set_xlabel("epoch")
    left.set_ylabel("nats per example")
    left.set_title(f"Training objective and validation ELBO{bound}")
    left.legend(fontsize="small")
    # the likelihood term of the quantity bounded: a CVAE's decoder reads y, quadrant completion's x_g
    # (quadrant completion's quantity names its given quadrants after a comma: "log p(x_m | x_g), x_g the ...")
    term = {"log p(x | y)": "log p(x|z,y)", "log p(x_m | x_g)": "log p(x_m|z,x_g)"}.get(quantity.split(",")[0],
                                                                                        "log p(x|z)")
    right.plot(epochs, [-row["valid_reconstruction"] for row in history], label=f"-E[{term}] (reconstruction)")
    right.set_xlabel("epoch")
    right.set_ylabel("nats per example")
    twin = right.twinx()
    twin.plot(epochs, [row["valid_kl"] for row in history], color="tab:red", label="KL(q || p)")
    twin.set_ylabel("KL, nats per example", color="tab:red")
    right.set_title("Validation ELBO parts")
    right.legend(loc="upper left")
    twin.legend(loc="upper right")
    _whole_epochs(left, right)
    _widen_curves_margins(fig, left, right, twin)
    return _save(fig, path)


def _whole_epochs(*axes) -> None:
    """Ticks at whole epochs only: a history has no epoch 1.5 (a few epochs got ticks at 1.2, 1.4, ...;
    one epoch, whose axis spans no two whole numbers, at 0.945, 0.96, ...). A curve of one epoch is
    one point, which a line does not draw: it gets a marker (a one-epoch run's curves were empty)."""
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[0].figure.axes:  # the KL's twin axis too: its point, a cross, on the reconstruction's
        epochs = {x for line in ax.lines for x in line.get_xdata()}
        if len(epochs) == 1:
            ax.set_xticks(sorted(epochs))
        for line in ax.lines:
            if len(line.get_xdata()) == 1:
                line.set_marker("o" if ax in axes else "x")
