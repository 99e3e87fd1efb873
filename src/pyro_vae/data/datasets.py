"""Named data sets with fixed splits, read as float tensors ``[N, C, H, W]`` in [0, 1].

Every split is held as bytes (:class:`ByteImages`: uint8 grey levels, or 0/1 for binary
images) and becomes float32 only when a batch is drawn, so a loaded data set costs about
the bytes of its images rather than four times them.

Splits (fixed, the same for every run):

* ``fashion-mnist``, ``mnist`` and ``idx`` (your own IDX files): the first 50,000 training
  images train, the last 10,000 validate, the 10,000 ``t10k`` images test. An ``idx``
  folder with fewer than 20,000 training images keeps its last sixth for validation.
* ``binarized-mnist``: Larochelle's static split, 50,000 / 10,000 / 10,000.
* ``mnist-t10k``: real handwritten digits where only the MNIST *test* set is at hand (10,000
  labelled images): images 0-6,999 train, 7,000-7,999 validate, 8,000-9,999 test.
* ``image-folder``: your own PNG/JPEG files, colour or grey, at a chosen square size
  (:mod:`pyro_vae.data.folders`): CelebA's partition file or a split by file name; class
  sub-folders become labels and CelebA's attributes boolean attributes by name. Their
  images stay bytes (memory-mapped when cached) until a batch is drawn.

Binarization (``--binarize``) of grey-level data:

* ``none``: keep grey levels in [0, 1];
* ``dynamic``: each training image is redrawn as Bernoulli(pixel) in every batch; the
  validation and test images are drawn once with the fixed seeds 0 and 1 (a stream each),
  so every run is scored on the same binary images;
* ``static``: every split drawn once as Bernoulli(pixel) with the run's seed;
* ``threshold``: pixel > 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from pyro_vae.counts import is_whole_number
from pyro_vae.data.folders import MODES, ByteImages, decoded_images, scan_image_folder
from pyro_vae.data.readers import read_amat, read_idx
from pyro_vae.data.sources import BINARIZED_MNIST, FASHION_MNIST, MNIST, DataSource, check_data_dir, locate
from pyro_vae.errors import DataError

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
VALIDATION_SIZE = 10_000
EVAL_BINARIZATION_SEED = 0
#: Seed of the one binary draw of the training split when a dynamically binarized run is
#: scored on it (validation and test use EVAL_BINARIZATION_SEED and the one after).
TRAIN_EVAL_BINARIZATION_SEED = EVAL_BINARIZATION_SEED + 2


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a named data set (empty where it has none or they are numbers)."""
    return {"fashion-mnist": FASHION_MNIST_CLASSES, "mnist": DIGIT_CLASSES, "mnist-t10k": DIGIT_CLASSES}.get(dataset, ())


def balanced_label_subset(labels: torch.Tensor, n: int, seed: int, classes: int | None = None,
                          names: tuple[str, ...] = ()) -> torch.Tensor:
    """Indices of ``n`` examples, as balanced across the classes as ``n`` allows (the first
    ``n % C`` classes get one more), chosen at random with ``seed``; sorted.

    The same seed gives the same examples; the indices are into ``labels`` (a training
    split), so they cannot overlap the validation or test split. ``classes`` is how many
    classes the data set has (default: the largest label + 1); one with no training example
    (a small ``--train-limit``) is refused, named by ``names`` where given.
    """
    classes = int(labels.max()) + 1 if classes is None else classes
    if not classes <= n <= len(labels):
        raise DataError(f"--labels must be between the number of classes ({classes}) and the number of "
                        f"training examples ({len(labels)}), not {n}.")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(classes):
        members = torch.nonzero(labels == c).flatten()
        want = n // classes + (1 if c < n % classes else 0)
        name = f"class {c}" + (f" ({names[c]})" if c < len(names) and names[c] != str(c) else "")
        if len(members) == 0:  # fewer --labels cannot help: every class needs one
            raise DataError(f"{name} has no example in the training split, so no label of it can be chosen; give a "
                            "larger --train-limit (or none), or data with examples of every class.")
        if len(members) < want:
            raise DataError(f"{name} has only {len(members)} training example{'s' * (len(members) > 1)}, fewer than the {want} labels of it "
                            f"that --labels {n} asks for; ask for fewer --labels, or give a larger --train-limit.")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:want]])
    return torch.cat(chosen).sort().values


@dataclass
class Split:
    """Images ``[N, C, H, W]`` float32 in [0, 1] (a tensor, or :class:`ByteImages` that
    read as one), optional labels ``[N]`` int64, boolean attributes ``[N, A]`` and the
    images' file names (for image folders)."""

    images: torch.Tensor | ByteImages
    labels: torch.Tensor | None = None
    attributes: torch.Tensor | None = None
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device) -> Split:
        labels = None if self.labels is None else self.labels.to(device)
        attributes = None if self.attributes is None else self.attributes.to(device)
        return Split(self.images.to(device), labels, attributes, self.names)

    def head(self, n: int, keep_bytes: bool = False) -> Split:
        """The first ``n`` examples, their images as a float tensor (byte images stay bytes
        with ``keep_bytes``)."""
        labels = None if self.labels is None else self.labels[:n]
        attributes = None if self.attributes is None else self.attributes[:n]
        bytes_kept = keep_bytes and isinstance(self.images, ByteImages)
        return Split(self.images.subset(slice(0, n)) if bytes_kept else self.images[:n], labels, attributes,
                     self.names[:n])

    def take(self, rows: torch.Tensor) -> Split:
        """The examples at indices ``rows`` ``[n]`` (int64), in that order; images as floats."""
        def pick(t):
            return None if t is None else t[rows.to(t.device)]

        images = self.images[rows.to(self.images.device)] if torch.is_tensor(self.images) else self.images[rows]
        return Split(images, pick(self.labels), pick(self.attributes),
                     tuple(self.names[i] for i in rows.tolist()) if self.names else ())


@dataclass
class ImageDataset:
    name: str
    train: Split
    valid: Split
    test: Split
    binarize: str = "none"
    class_names: tuple[str, ...] = field(default_factory=tuple)
    attribute_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    def validate(self) -> ImageDataset:
        """Check every split once, at the boundary: 4-D float images, finite, non-empty, of
        one shape; labels (if any) one per image in 0..C-1; ``binarize`` one of
        :data:`BINARIZATIONS` (a misspelt one read as "none"). Raises :class:`DataError`."""
        self.check_binarize()
        shape = None
        for split_name in ("train", "valid", "test"):
            split, what = self.split(split_name), f"the {split_name} split of '{self.name}'"
            images = split.images
            as_bytes = isinstance(images, ByteImages)  # bytes / 255: float and finite by construction
            if not as_bytes and (not torch.is_tensor(images) or not images.is_floating_point()):
                raise DataError(f"{what} must be a float tensor of images, not {getattr(images, 'dtype', type(images))}.")
            if images.dim() != 4:
                raise DataError(f"{what} has shape {tuple(images.shape)}; images must be [N, C, H, W].")
            if images.shape[0] == 0:
                raise DataError(f"{what} is empty; a data set needs images in every split.")
            if shape is not None and images.shape[1:] != shape:
                raise DataError(f"{what} has images of shape {tuple(images.shape[1:])}, unlike the "
                                f"training images' {tuple(shape)}.")
            shape = images.shape[1:]
            if not as_bytes and not torch.isfinite(images).all():
                raise DataError(f"{what} contains NaN or infinite values; clean or drop those images.")
            labels = split.labels
            if labels is not None:
                if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
                    raise DataError(f"{what} has {labels.shape[0] if labels.dim() else 0} labels for "
                                    f"{images.shape[0]} images; give one label per image.")
                if labels.is_floating_point() or labels.dtype == torch.bool:
                    raise DataError(f"{what} has {labels.dtype} labels; labels must be whole numbers.")
                classes = len(self.class_names) or int(labels.max()) + 1
                if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
                    raise DataError(f"{what} has labels outside 0..{classes - 1}.")
        return self

    def check_binarize(self) -> ImageDataset:
        """A :class:`DataError` unless ``binarize`` is one of :data:`BINARIZATIONS`: the trainer
        reads any other name (a misspelt "dynamic") as "none" and never redraws a batch."""
        if self.binarize not in BINARIZATIONS:
            raise DataError(f"'{self.name}' has binarize={self.binarize!r}; choose from {', '.join(BINARIZATIONS)}.")
        return self

    def split(self, name: str) -> Split:
        if name not in ("train", "valid", "test"):
            raise DataError(f"unknown split '{name}'; choose train, valid or test.")
        return getattr(self, name)

    def scored_split(self, name: str) -> Split:
        """Split ``name`` as a model of this data set is scored on it: with dynamic
        binarization, the training images are drawn once as Bernoulli(pixel) with a fixed
        seed, as the validation and test images are (each epoch draws them afresh in
        training), so a Bernoulli likelihood is never scored on grey pixels."""
        split = self.split(name)
        if name == "train" and self.binarize == "dynamic":
            images = binarize_batch(as_tensor(split.images).cpu(),
                                    torch.Generator().manual_seed(TRAIN_EVAL_BINARIZATION_SEED))
            split = replace(split, images=images.to(split.images.device))
        return split

    def to(self, device) -> ImageDataset:
        return ImageDataset(self.name, self.train.to(device), self.valid.to(device),
                            self.test.to(device), self.binarize, self.class_names, self.attribute_names)

    def check_support(self, likelihood, hint: str | None = None) -> None:
        """Refuse data outside ``likelihood``'s support, once, before training (``hint``: how
        the caller fixes it, where that is not the Python way, e.g. the CLI's flags)."""
        for split_name in ("train", "valid", "test"):
            images = self.split(split_name).images
            what = f"the {split_name} split of '{self.name}'"
            if split_name == "train" and self.binarize == "dynamic":
                if isinstance(images, ByteImages):  # bytes / 255 or 0/1: in [0, 1] by construction
                    continue
                if not torch.isfinite(images).all() or ((images < 0) | (images > 1)).any():
                    raise DataError(f"{what} needs pixel intensities in [0, 1] for dynamic binarization.")
                continue
            # A support is a per-pixel property: bytes are checked by their distinct values.
            likelihood.check_support(images.distinct_values() if isinstance(images, ByteImages) else images, what, hint)

    def batches(self, split: str = "train", batch_size: int = 128, shuffle: bool | None = None,
                generator: torch.Generator | None = None):
        """The images of ``split`` in batches ``[B, C, H, W]``, as the trainer sees them: the
        training split of a dynamically binarized data set is drawn afresh as Bernoulli(pixel)
        in every batch (the other splits and binarizations were drawn once at load time), so
        every batch lies in the likelihood's support. ``shuffle`` (default: for ``train``)
        draws the order with ``generator``; the last batch may be smaller. A ``batch_size``
        that is not a whole number of at least 1 is refused when called (a negative one gave no
        batch at all, so a loop over them trained nothing without a word)."""
        images = self.split(split).images
        if not is_whole_number(batch_size) or batch_size < 1:
            raise DataError(f"batch_size must be a whole number of at least 1, not {batch_size!r}.")
        return self._batches(images, split, int(batch_size), shuffle, generator)

    def _batches(self, images, split: str, batch_size: int, shuffle: bool | None, generator):
        shuffle = split == "train" if shuffle is None else shuffle
        n = images.shape[0]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            batch = images[rows.to(images.device) if torch.is_tensor(images) else rows]
            if split == "train" and self.binarize == "dynamic":
                batch = binarize(batch, generator)
            yield batch


def binarize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Bernoulli(pixel) draw of every pixel of grey-level ``images`` (a float tensor of
    any shape, values in [0, 1]): 0/1 images of the same shape, as dynamic binarization draws
    each training batch. Anything else (bytes 0-255, NaN) raises :class:`DataError`."""
    if isinstance(images, ByteImages):  # a split's images: float32 in [0, 1] as they read
        images = images[:]
    if not torch.is_tensor(images) or not images.is_floating_point():
        raise DataError(f"binarize takes grey levels as a float tensor in [0, 1], not "
                        f"{getattr(images, 'dtype', type(images).__name__)}; divide 8-bit images by 255 first "
                        "(x.float() / 255).")
    if images.numel() and not ((images >= 0) & (images <= 1)).all():  # NaN fails both
        if images.isnan().any():
            raise DataError("binarize takes grey levels in [0, 1], but these hold NaN; drop or clean those images.")
        raise DataError(f"binarize takes grey levels in [0, 1], but these lie in [{images.min().item():g}, "
                        f"{images.max().item():g}]; scale them to [0, 1] first (8-bit images: x / 255).")
    return binarize_batch(images, generator)


def binarize_batch(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`binarize` without its checks, for the trainer's batches of data already checked
    (:meth:`ImageDataset.check_support`)."""
    return torch.bernoulli(images, generator=generator)


#: How ``load_dataset`` binarizes a split: not at all, a new draw every batch (dynamic, drawn by
#: the trainer), one fixed draw (static) or at 0.5 (threshold); the CLI's "auto" is resolved before.
BINARIZATIONS = ("none", "dynamic", "static", "threshold")


def _binarize(images: torch.Tensor | ByteImages, how: str, seed: int) -> torch.Tensor | ByteImages:
    """One binary draw of a whole split (one Bernoulli stream, so the draws do not depend on
    any chunking), kept as 0/1 bytes; the float copy lives only during the draw."""
    if how == "none":
        return images
    floats = as_tensor(images)
    if how == "threshold":
        binary = floats > 0.5
    else:  # static, dynamic
        binary = binarize_batch(floats, torch.Generator().manual_seed(seed))
    del floats
    return ByteImages(binary.to(torch.uint8), scale=1.0)


def _to_images(array: np.ndarray, path: Path, max_value: float = 255.0) -> ByteImages:
    """uint8 ``[N, H, W]`` or ``[N, D]`` in 0..max_value -> ``[N, 1, H, W]`` bytes that read
    as float32 in [0, 1] (``max_value`` 255 for grey levels, 1 for 0/1 images)."""
    if array.ndim == 2:  # .amat rows are flattened 28x28 images
        side = int(round(array.shape[1] ** 0.5))
        array = array.reshape(-1, side, side)
    if array.ndim != 3 or array.shape[0] == 0:
        raise DataError(f"{path} holds no images of shape [N, H, W] (its shape is {array.shape}).")
    if array.dtype != np.uint8:
        raise DataError(f"{path} holds {array.dtype} values; images must be unsigned bytes (0-255).")
    # A writable copy of the bytes (the reader's array may be a read-only view of the file).
    return ByteImages(torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).unsqueeze(1), scale=max_value)


def _labels(array: np.ndarray, path: Path, count: int, num_classes: int = 10) -> torch.Tensor:
    if array.ndim != 1 or array.shape[0] != count:
        raise DataError(f"{path} has {array.shape[0] if array.ndim else 0} labels for {count} images; "
                        "images and labels must come from the same set.")
    if array.dtype.kind not in "iu":  # astype(int64) would cut 2.5 to 2 in silence
        raise DataError(f"{path} holds {array.dtype} labels; labels must be whole class numbers (an IDX label "
                        "file of unsigned bytes, type 0x08).")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise DataError(f"{path} has labels outside 0..{num_classes - 1}.")
    return torch.from_numpy(array.astype(np.int64))


def _idx_splits(paths: dict[str, Path], labelled: bool, source: DataSource | None = None,
                num_classes: int | None = 10) -> tuple[Split, Split, Split]:
    """The splits of IDX files; with ``source`` each file's bytes are checked against its
    published SHA-256 as they are read (``locate(..., verified=False)`` left that here).
    ``num_classes``: the labels' range 0..num_classes-1, or None for a user's own files, whose
    training labels set it (EMNIST letters, KMNIST-49...) and whose test labels must lie in it."""
    def sha(role: str) -> str | None:
        return source.files[role].sha256 if source is not None else None

    images = {role: _to_images(read_idx(paths[f"{role}_images"], 3, sha(f"{role}_images")), paths[f"{role}_images"])
              for role in ("train", "test")}
    labels = {role: None for role in ("train", "test")}
    if labelled:
        labels = {role: _labels(read_idx(paths[f"{role}_labels"], 1, sha(f"{role}_labels")), paths[f"{role}_labels"],
                                len(images[role]), 256 if num_classes is None else num_classes)
                  for role in ("train", "test")}
        if num_classes is None and int(labels["test"].max()) > int(labels["train"].max()):
            raise DataError(f"{paths['test_labels']} has class {int(labels['test'].max())}, which no training label "
                            f"in {paths['train_labels']} reaches (those run to {int(labels['train'].max())}); a model "
                            "cannot score a class it was built without: give test labels of the training classes.")
    n = len(images["train"])
    n_valid = VALIDATION_SIZE if n >= 2 * VALIDATION_SIZE else n // 6
    if n_valid == 0:
        raise DataError(f"{paths['train_images']} has too few images ({n}) to hold out a validation split.")
    cut = n - n_valid

    def part(role, rows):
        return Split(images[role].subset(rows), None if labels[role] is None else labels[role][rows])

    return part("train", slice(0, cut)), part("train", slice(cut, n)), part("test", slice(None))


def _own_idx_paths(data_dir: str) -> tuple[dict[str, Path], bool]:
    check_data_dir(data_dir)
    root = Path(data_dir).expanduser()
    paths = {}
    for role, stem in (("train_images", "train-images-idx3-ubyte"), ("train_labels", "train-labels-idx1-ubyte"),
                       ("test_images", "t10k-images-idx3-ubyte"), ("test_labels", "t10k-labels-idx1-ubyte")):
        for name in (stem, stem + ".gz"):
            if (root / name).is_file():
                paths[role] = root / name
    for role in ("train_images", "test_images"):
        if role not in paths:
            stem = "train-images-idx3-ubyte" if role == "train_images" else "t10k-images-idx3-ubyte"
            raise DataError(f"{root} has no {stem}[.gz]; an idx data folder needs MNIST-style file names.")
    have = [role for role in ("train_labels", "test_labels") if role in paths]
    if len(have) == 1:  # read as unlabelled, the one label file was dropped without a word
        missing = "t10k-labels-idx1-ubyte" if have == ["train_labels"] else "train-labels-idx1-ubyte"
        raise DataError(f"{root} has {paths[have[0]].name} but no {missing}[.gz]; add it for labelled data, or "
                        f"move {paths[have[0]].name} out of the folder for unlabelled images.")
    return paths, len(have) == 2


@dataclass
class FolderOptions:
    """How ``image-folder`` data are read: square ``size`` in pixels, ``mode`` rgb or grey,
    decoding ``workers`` (processes), an on-disk ``cache_dir`` (None: decode into memory)
    and whether to drop unreadable files (``skip_bad``) instead of stopping."""

    size: int = 64
    mode: str = "rgb"
    workers: int = 0
    cache_dir: Path | None = None
    skip_bad: bool = False
    progress: bool = False

    def check(self) -> FolderOptions:
        """Refuse what the CLI's --image-size, --image-mode and --workers refuse (a :class:`DataError`)."""
        if self.mode not in MODES:  # "gray", "RGB" ended in a KeyError from every image
            raise DataError(f"FolderOptions mode {self.mode!r} is not one of {', '.join(map(repr, MODES))}.")
        if not is_whole_number(self.size) or not 4 <= self.size <= 1024:
            raise DataError(f"FolderOptions size must be a whole number of pixels from 4 to 1024, not {self.size!r}.")
        if not is_whole_number(self.workers) or self.workers < 0:
            raise DataError(f"FolderOptions workers must be 0 (decode in this process) or more, not {self.workers!r}.")
        self.size, self.workers = int(self.size), int(self.workers)  # NumPy integers as Python's
        return self


def _folder_splits(data_dir: str, options: FolderOptions) -> tuple[Split, Split, Split, tuple, tuple]:
    check_data_dir(data_dir)
    options.check()
    layout = scan_image_folder(data_dir)
    data, keep = decoded_images(layout, options.size, options.mode, options.workers, options.cache_dir,
                                options.skip_bad, options.progress)
    labels = None if layout.labels is None else torch.from_numpy(layout.labels)
    attributes = None if layout.attributes is None else torch.from_numpy(layout.attributes)
    splits = []
    for code, split_name in enumerate(("train", "valid", "test")):
        rows = torch.from_numpy(np.flatnonzero(keep & (layout.partition == code)))
        if len(rows) == 0:
            raise DataError(f"the {split_name} split of {layout.image_dir} would be empty ({int(keep.sum())} "
                            "readable images); a folder needs at least a few dozen images.")
        splits.append(Split(ByteImages(data, rows), None if labels is None else labels[rows],
                            None if attributes is None else attributes[rows],
                            tuple(layout.files[i] for i in rows.tolist())))
    return (*splits, layout.class_names, layout.attribute_names)


def load_dataset(name: str, data_dir: str = "", binarize: str = "none", seed: int = 0,
                 train_limit: int = 0, download: bool = True, folder: FolderOptions | None = None) -> ImageDataset:
    """Load data set ``name`` with its fixed splits and the chosen binarization (``folder``:
    the options of ``image-folder``; binarized MNIST is 0/1 already and takes ``"none"``).
    ``seed`` draws ``binarize="static"``'s one fixed binarization, and is refused with any other
    (a dynamic binarization's draws come from the training seed: ``fit(..., seed=)``)."""
    if binarize not in BINARIZATIONS:  # _binarize would take any other name for a static draw
        raise DataError(f"unknown binarize {binarize!r}; choose from {', '.join(BINARIZATIONS)}.")
    if seed != 0 and binarize != "static":  # it was accepted and ignored
        raise DataError(f"seed={seed!r} has no effect with binarize={binarize!r} (it draws binarize='static''s one "
                        "fixed binarization; a dynamic one is drawn from the training seed, fit's seed=); drop it.")
    # A negative one would drop images from the end; True would be read as 1.
    if not is_whole_number(train_limit) or train_limit < 0:
        raise DataError(f"train_limit must be 0 (all the training images) or a positive count, not {train_limit!r}.")
    train_limit = int(train_limit)  # a NumPy integer as Python's
    if name == "binarized-mnist" and binarize != "none":  # as the CLI refuses --binarize there
        raise DataError(f"binarize={binarize!r} has no effect on binarized-mnist, whose pixels are 0/1 already (a "
                        "fixed draw); give binarize='none'.")
    if name in ("idx", "image-folder") and not data_dir:  # "" would read the current folder as one
        raise DataError(f"'{name}' reads your own {'IDX files' if name == 'idx' else 'images'}: give their folder "
                        f"as data_dir (load_dataset({name!r}, data_dir=DIR)).")
    if folder is not None and name != "image-folder":
        raise DataError(f"folder options have no effect on {name!r} (they are for 'image-folder'); drop folder.")
    attribute_names: tuple[str, ...] = ()
    if name == "image-folder":
        train, valid, test, classes, attribute_names = _folder_splits(data_dir, folder or FolderOptions())
    elif name in ("fashion-mnist", "mnist"):
        source = FASHION_MNIST if name == "fashion-mnist" else MNIST
        # Each file is checked as it is read (one gunzip), not before (a second one).
        train, valid, test = _idx_splits(locate(source, data_dir or None, download, verified=False), labelled=True,
                                         source=source)
        classes = FASHION_MNIST_CLASSES if name == "fashion-mnist" else DIGIT_CLASSES
    elif name == "mnist-t10k":
        paths = locate(MNIST, data_dir or None, download, roles=("test_images", "test_labels"), verified=False)
        images = _to_images(read_idx(paths["test_images"], 3, MNIST.files["test_images"].sha256), paths["test_images"])
        labels = _labels(read_idx(paths["test_labels"], 1, MNIST.files["test_labels"].sha256), paths["test_labels"],
                         len(images))
        train, valid, test = (Split(images.subset(rows), labels[rows])
                              for rows in (slice(0, 7000), slice(7000, 8000), slice(8000, 10000)))
        classes = DIGIT_CLASSES
    elif name == "binarized-mnist":
        paths = locate(BINARIZED_MNIST, data_dir or None, download, verified=False)
        train, valid, test = (Split(_to_images(read_amat(paths[f"{role}_images"],
                                                         sha256=BINARIZED_MNIST.files[f"{role}_images"].sha256),
                                               paths[f"{role}_images"], 1.0))
                              for role in ("train", "valid", "test"))
        classes = ()
        binarize = "none"  # already binary
    elif name == "idx":
        paths, labelled = _own_idx_paths(data_dir)
        train, valid, test = _idx_splits(paths, labelled, num_classes=None)
        # the classes are numbers, as many as the training file's labels take (its highest may fall in
        # the validation split alone)
        classes = (tuple(str(c) for c in range(max(int(train.labels.max()), int(valid.labels.max())) + 1))
                   if labelled else ())
    else:
        raise DataError(f"unknown dataset '{name}'; choose fashion-mnist, mnist, mnist-t10k, binarized-mnist, "
                        "idx or image-folder.")
    if train_limit:
        if train_limit > len(train):  # head() would keep them all: a limit that limits nothing
            raise DataError(f"--train-limit {train_limit} is more than the {len(train)} images of the training split "
                            f"of '{name}'; give at most {len(train)}, or 0 for all of them.")
        train = train.head(train_limit, keep_bytes=True)
    if binarize != "none":
        if binarize != "dynamic":
            train = replace(train, images=_binarize(train.images, binarize, seed))
        # Each split its own Bernoulli stream: static draws of validation from the training
        # split's seed would give image i of both the same uniforms.
        eval_seed = EVAL_BINARIZATION_SEED if binarize == "dynamic" else seed + 1
        valid = replace(valid, images=_binarize(valid.images, binarize, eval_seed))
        test = replace(test, images=_binarize(test.images, binarize, eval_seed + 1))
    return ImageDataset(name, train, valid, test, binarize, classes, attribute_names).validate()



def as_tensor(images: torch.Tensor | ByteImages) -> torch.Tensor:
    """A float tensor of ``images`` (byte images are read in full)."""
    return images if torch.is_tensor(images) else images[:]
