"""Your own images: a folder of PNG/JPEG files read with Pillow, as ``[N, C, S, S]`` in [0, 1].

Three layouts are recognised (:func:`scan_image_folder`):

* **CelebA**: ``list_attr_celeba.txt`` (a count, a line of attribute names, then one line
  per file: its name and a 1 or -1 per attribute) in the folder, or in its ``Anno/``
  sub-folder; the images in ``img_align_celeba/`` (or the folder itself); optionally
  ``list_eval_partition.txt`` (``name 0|1|2`` for train, valid, test; also looked for in
  ``Eval/``). The attributes become boolean labels by name (``Smiling``, ...).
* **class sub-folders**: ``DIR/<class>/*.png``: the sorted sub-folder names are the classes
  (images directly in ``DIR`` as well, or only in folders below a sub-folder, are refused: one
  layout or the other would drop them).
* **flat**: ``DIR/*.png``, unlabelled.

Without a partition file the split is fixed by the file's name: the SHA-256 of its path
relative to the folder puts it in train (80 %), valid (10 %) or test (10 %), so adding
images never moves the others between splits.

Each image is converted to RGB or grey, resized so its shorter side is ``size`` and
centre-cropped to ``size`` x ``size`` (Pillow's :func:`ImageOps.fit`), and stored as bytes.
Decoding runs once, in ``workers`` processes (a :class:`torch.utils.data.DataLoader` over
:class:`ImageFolderDataset`); on request the decoded bytes are cached on disk as a ``.npy``
file that later runs memory-map instead of decoding again, so a large folder is never held
in memory as floats: batches become float32 only when they are drawn (:class:`ByteImages`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pyro_vae.errors import DataError, WriteError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
MODES = {"rgb": "RGB", "grey": "L"}


@dataclass
class FolderLayout:
    """What :func:`scan_image_folder` found: ``files`` relative to ``image_dir`` (sorted),
    and per file its split (0 train, 1 valid, 2 test), class label and attributes."""

    kind: str  # "celeba", "classes" or "flat"
    image_dir: Path
    files: list[str]
    partition: np.ndarray  # [N] int
    labels: np.ndarray | None = None  # [N] int64
    class_names: tuple[str, ...] = ()
    attributes: np.ndarray | None = None  # [N, A] bool
    attribute_names: tuple[str, ...] = ()


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def hash_partition(names: list[str]) -> np.ndarray:
    """Split by name: SHA-256 of each relative path, mod 10 -> 0-7 train, 8 valid, 9 test.
    A name is hashed as its bytes on disk (``os.fsencode``: UTF-8, and a name that is not
    UTF-8, e.g. Latin-1 from an old archive, as the bytes it has)."""
    buckets = np.array([int(hashlib.sha256(os.fsencode(n)).hexdigest()[:8], 16) % 10 for n in names], dtype=np.int64)
    return np.where(buckets < 8, 0, np.where(buckets == 8, 1, 2))


def read_celeba_attributes(path: Path) -> tuple[tuple[str, ...], list[str], np.ndarray]:
    """Parse ``list_attr_celeba.txt`` -> (attribute names, file names, values ``[N, A]`` bool).
    Raises :class:`DataError` naming the line for anything malformed."""
    try:  # utf-8-sig: a byte-order mark (a file saved by Windows Notepad) is not part of the count
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} ({err}).") from None
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataError(f"{path} must start with the number of images on its first line and the attribute "
                        "names on its second, as CelebA's list_attr_celeba.txt does.")
    declared, names = int(lines[0]), tuple(lines[1].split())
    if not names or len(set(names)) != len(names):
        raise DataError(f"{path} line 2 must list distinct attribute names.")
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise DataError(f"{path} line {number} has {len(fields) - 1} values after the file name; "
                            f"each line needs one per attribute ({len(names)}).")
        if any(v not in ("1", "-1") for v in fields[1:]):
            raise DataError(f"{path} line {number} has a value other than 1 or -1; attributes are +1/-1.")
        files.append(fields[0])
        rows.append([v == "1" for v in fields[1:]])
    if len(files) != declared:
        raise DataError(f"{path} declares {declared} images on line 1 but lists {len(files)}; "
                        "the file is truncated or the count is wrong.")
    if len(set(files)) != len(files):
        raise DataError(f"{path} lists some file names more than once.")
    return names, files, np.array(rows, dtype=bool).reshape(len(files), len(names))


def read_celeba_partition(path: Path) -> dict[str, int]:
    """Parse ``list_eval_partition.txt`` (``name 0|1|2`` per line) -> name to split."""
    partition = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is not part of a name
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} ({err}).") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path} line {number} must be a file name and 0 (train), 1 (valid) or 2 (test).")
        partition[fields[0]] = int(fields[1])
    return partition


def scan_image_folder(root: str | Path) -> FolderLayout:
    """Find the images under ``root`` and their layout (see the module docstring)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"the image folder {root} does not exist; give an existing folder with --data-dir DIR.")
    attributes_file = _first_existing(root / CELEBA_ATTRIBUTES, root / "Anno" / CELEBA_ATTRIBUTES)
    if attributes_file is not None:
        return _celeba_layout(root, attributes_file)
    partition_file = _first_existing(root / CELEBA_PARTITION, root / "Eval" / CELEBA_PARTITION)
    if partition_file is not None:  # without the attributes it would be passed over for the split by file name
        raise DataError(f"{partition_file} gives CelebA's split, which is read with CelebA's {CELEBA_ATTRIBUTES}, "
                        f"and {root} has none; put {CELEBA_ATTRIBUTES} (from CelebA's Anno/) beside it, or move "
                        "the partition file away to split the images by file name.")
    sub_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    class_dirs = [d for d in sub_dirs if any(_is_image(p) for p in d.iterdir())]
    for folder in sub_dirs:  # images only deeper down would be left out of every class without a word
        deeper = None if folder in class_dirs else next((p for p in folder.rglob("*") if _is_image(p)), None)
        if deeper is not None:
            raise DataError(f"{folder} holds images only in folders below it ({deeper.relative_to(root)}), and "
                            "only the images directly in a class sub-folder are read; move them up into "
                            f"{folder.name}/, or give the folder that holds them as --data-dir.")
    loose = sorted(p.name for p in root.iterdir() if _is_image(p))
    if class_dirs and loose:  # either layout alone would leave out some of the images
        raise DataError(f"{root} holds images both directly ({loose[0]}, ... {len(loose)} of them) and in "
                        f"sub-folders ({', '.join(d.name + '/' for d in class_dirs[:3])}...); put every image in "
                        "a class sub-folder for labels, or move the sub-folders out for unlabelled images.")
    if class_dirs:
        files, labels = [], []
        for label, folder in enumerate(class_dirs):
            names = sorted(p.name for p in folder.iterdir() if _is_image(p))
            files += [f"{folder.name}/{n}" for n in names]
            labels += [label] * len(names)
        return FolderLayout("classes", root, files, hash_partition(files), np.array(labels, dtype=np.int64),
                            tuple(d.name for d in class_dirs))
    if not loose:
        raise DataError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}), directly or in class sub-folders.")
    return FolderLayout("flat", root, loose, hash_partition(loose))


def _celeba_layout(root: Path, attributes_file: Path) -> FolderLayout:
    names, files, values = read_celeba_attributes(attributes_file)
    image_dir = next((d for d in (root / "img_align_celeba" / "img_align_celeba", root / "img_align_celeba")
                      if d.is_dir()), root)
    partition_file = _first_existing(root / CELEBA_PARTITION, root / "Eval" / CELEBA_PARTITION)
    if partition_file is None:
        partition = hash_partition(files)
    else:
        split_of = read_celeba_partition(partition_file)
        missing = [f for f in files if f not in split_of]
        if missing:
            raise DataError(f"{partition_file} has no split for {len(missing)} of the images in {attributes_file} "
                            f"(the first is {missing[0]}); use the partition file that came with them.")
        partition = np.array([split_of[f] for f in files], dtype=np.int64)
    return FolderLayout("celeba", image_dir, files, partition, attributes=values, attribute_names=names)


def load_image(path: Path, size: int, mode: str = "rgb") -> np.ndarray:
    """One image -> uint8 ``[C, size, size]``: converted to ``mode``, the shorter side resized
    to ``size`` and the centre cropped. Raises ``OSError``/``ValueError`` from Pillow when
    the file is not a readable image."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.draft(MODES[mode], (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, never below size
        if image.mode.startswith("I;16"):  # 16-bit grey: Pillow's convert clips it at 255 (mostly white)
            levels = np.asarray(image).astype(np.uint32)
            image = Image.fromarray(((levels * 255 + 32767) // 65535).astype(np.uint8), "L")
        image = ImageOps.fit(image.convert(MODES[mode]), (size, size), method=Image.Resampling.BILINEAR)
        array = np.array(image, dtype=np.uint8)  # a writable copy
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class ImageFolderDataset(Dataset):
    """``files`` under ``image_dir``, decoded on access: item ``i`` is ``(i, image)`` with
    ``image`` uint8 ``[C, size, size]``, or ``(i, message)`` when the file cannot be read
    (so one bad file in a worker process does not end the others' work)."""

    def __init__(self, image_dir: Path, files: list[str], size: int, mode: str = "rgb"):
        self.image_dir, self.files, self.size, self.mode = Path(image_dir), files, size, mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        try:
            return index, torch.from_numpy(load_image(self.image_dir / self.files[index], self.size, self.mode))
        except FileNotFoundError:
            return index, "the file is missing"
        # Pillow's errors for truncated or foreign files, and for one of more than twice
        # Image.MAX_IMAGE_PIXELS pixels (a "decompression bomb", an Exception of its own)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return index, f"not a readable image ({type(err).__name__}: {err})"


def _collate(items):
    return items


def decode_folder(dataset: ImageFolderDataset, out: np.ndarray, workers: int = 0,
                  progress: bool = False) -> dict[str, str]:
    """Decode every image of ``dataset`` into ``out`` ``[N, C, S, S]`` uint8 (an array or a
    memory map); returns the files that could not be read, with why."""
    loader = DataLoader(dataset, batch_size=64, num_workers=workers, collate_fn=_collate,
                        persistent_workers=False)
    bad = {}
    iterator = loader
    if progress:
        from tqdm import tqdm

        iterator = tqdm(loader, desc=f"decoding {len(dataset)} images", unit="batch", file=sys.stderr)
    for batch in iterator:
        for index, item in batch:
            if isinstance(item, str):
                bad[dataset.files[index]] = item
            else:
                out[index] = item.numpy()
    return bad


#: The decoder's version, part of every cache key: a change to how an image becomes its array
#: (2: 16-bit grey levels scaled to 8 bits, where Pillow clipped them at 255) makes the caches
#: decoded before it stale, so they are decoded again rather than read back as they were.
DECODER_VERSION = 2


def _cache_key(layout: FolderLayout, size: int, mode: str) -> str:
    """Changes when any file is added, removed, replaced or touched, the size or mode changes,
    or the decoder does (:data:`DECODER_VERSION`)."""
    digest = hashlib.sha256(os.fsencode(f"{layout.image_dir.resolve()}|{size}|{mode}|decoder {DECODER_VERSION}"))
    for name in layout.files:
        try:
            stat = (layout.image_dir / name).stat()
            digest.update(os.fsencode(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n"))
        except FileNotFoundError:  # a missing file is reported when the folder is decoded
            digest.update(os.fsencode(f"{name}|missing\n"))
    return digest.hexdigest()[:24]


def _allocate(path: Path) -> None:
    """Reserve every block of the (sparse) file now: on a full disk this is ENOSPC here, not a
    SIGBUS that kills the process when a page of the memory map is first written, maybe an
    hour into decoding."""
    if hasattr(os, "posix_fallocate"):
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _cache_write(path: Path):
    """A failed write of the image cache (full disk, read-only or missing directory) as one
    sentence (:class:`WriteError`), as for a run's files."""
    try:
        yield
    except OSError as err:
        from pyro_vae.inference.checkpoint import write_failure_message  # the run files' wording

        raise WriteError(write_failure_message(path, err, existed=False)) from err


def decoded_images(layout: FolderLayout, size: int, mode: str = "rgb", workers: int = 0,
                   cache_dir: Path | None = None, skip_bad: bool = False,
                   progress: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """All of ``layout``'s images as uint8 ``[N, C, size, size]``, and which of them to keep
    (``[N]`` bool). With ``cache_dir`` the bytes live in ``cache_dir/<key>.npy``, written once
    (atomically) and memory-mapped by later calls. A file that cannot be read is an error
    naming it unless ``skip_bad``, which drops it (keep = False) with a warning on stderr."""
    channels = 1 if mode == "grey" else 3
    shape = (len(layout.files), channels, size, size)
    dataset = ImageFolderDataset(layout.image_dir, layout.files, size, mode)
    if cache_dir is None:
        array = np.zeros(shape, dtype=np.uint8)
        bad = decode_folder(dataset, array, workers, progress)
    else:
        cache_dir = Path(cache_dir).expanduser()
        key = _cache_key(layout, size, mode)
        path, bad_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.bad.json"
        if not (path.is_file() and bad_path.is_file()):
            tmp = cache_dir / f".{key}.{os.getpid()}.tmp.npy"
            try:
                with _cache_write(path):
                    cache_dir.mkdir(parents=True, exist_ok=True)
                    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                    _allocate(tmp)
                bad = decode_folder(dataset, array, workers, progress)
                with _cache_write(path):
                    array.flush()
                    del array
                    bad_path.write_text(json.dumps(bad))
                    os.replace(tmp, path)  # the cache appears whole or not at all
            finally:
                with contextlib.suppress(OSError):  # a read-only file system refuses even this (EROFS)
                    tmp.unlink(missing_ok=True)
        try:
            bad = json.loads(bad_path.read_text())
            array = np.load(path, mmap_mode="c")  # copy-on-write: pages are read from disk when used
        except (OSError, ValueError) as err:  # truncated or overwritten (JSONDecodeError is a ValueError)
            raise DataError(f"the image cache {path} is damaged ({err}); delete {path} and {bad_path.name} "
                            "beside it and run again.") from None
        if array.shape != shape:
            raise DataError(f"the image cache {path} does not match the folder; delete it and run again.")
    if bad:
        listed = "; ".join(f"{name}: {why}" for name, why in list(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        if not skip_bad:
            raise DataError(f"{len(bad)} image(s) under {layout.image_dir} cannot be read: {listed}{more}. "
                            "Remove or replace them, or pass --skip-bad-images to train without them.")
        print(f"warning: skipping {len(bad)} unreadable image(s): {listed}{more}", file=sys.stderr)
    keep = np.array([name not in bad for name in layout.files], dtype=bool)
    return torch.from_numpy(array), keep


class ByteImages:
    """uint8 images (in memory or memory-mapped) that read as float32 in [0, 1] batch by
    batch: ``images[index]`` returns ``float32(byte) / scale`` on ``device``, ``scale``
    255 for grey levels 0-255 (bitwise what ``uint8_array.astype(float32) / 255`` gives: one
    correctly rounded float32 division) and 1 for 0/1 pixels. ``rows`` picks this split's
    images out of ``data`` ``[N, C, H, W]`` without copying them. It stands in for a float
    tensor wherever the library indexes, slices or measures images, at a quarter of the
    memory (a binarized-MNIST or Fashion-MNIST split costs its bytes, not 4x them)."""

    dtype = torch.float32

    def __init__(self, data: torch.Tensor, rows: torch.Tensor | None = None, device: torch.device | str = "cpu",
                 scale: float = 255.0):
        self.data = data
        self.rows = torch.arange(len(data)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
        self.device = torch.device(device)
        self.scale = scale

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows),) + tuple(self.data.shape[1:]))

    def __len__(self) -> int:
        return len(self.rows)

    def dim(self) -> int:
        return self.data.dim()

    def is_floating_point(self) -> bool:
        return True

    def __getitem__(self, index) -> torch.Tensor:
        if torch.is_tensor(index):
            index = index.cpu()
        rows = self.rows[index]
        images = self.data[rows].to(self.device).float()
        return images if self.scale == 1 else images.div_(self.scale)

    def __getattr__(self, name):
        # Any other tensor attribute (mean, flatten, numpy, ...) acts on the float images,
        # read in full: code written for the float tensor a split used to hold keeps working.
        if name.startswith("_") or name in ("data", "rows", "device", "scale"):
            raise AttributeError(name)
        return getattr(self[:], name)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        """torch functions and modules (``torch.cat``, ``nn.Linear``) see the float images."""
        def floats(value):
            if isinstance(value, ByteImages):
                return value[:]
            if isinstance(value, (list, tuple)):
                return type(value)(floats(v) for v in value)
            return value

        return func(*floats(args), **{key: floats(value) for key, value in (kwargs or {}).items()})

    def subset(self, index) -> ByteImages:
        """The images at ``index`` (a slice or indices), still as bytes."""
        return ByteImages(self.data, self.rows[index], self.device, self.scale)

    def to(self, device) -> ByteImages:
        return ByteImages(self.data, self.rows, device, self.scale)

    def batches(self, size: int = 4096):
        for start in range(0, len(self), size):
            yield self[start:start + size]

    def distinct_values(self) -> torch.Tensor:
        """The distinct pixel values of these images as they read (``float32(byte) / scale``
        on ``device``, the same operations as ``images[index]``), 1-D and ascending: all that
        a per-pixel check (a likelihood's support) needs, from a count of the 256 byte values
        instead of every pixel made a float."""
        whole = len(self.rows) == len(self.data) and torch.equal(self.rows, torch.arange(len(self.data)))
        data = self.data if whole else self.data[self.rows]
        counts = torch.bincount(data.reshape(-1), minlength=256)
        values = torch.nonzero(counts).flatten().to(torch.uint8).to(self.device).float()
        return values if self.scale == 1 else values.div_(self.scale)


def _on_floats(name: str):
    def operator(self, *args):
        return getattr(self[:], name)(*args)

    operator.__name__ = name
    return operator


# Operators (images == 0, 1 - images, ...) act on the float images too, read in full.
for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__radd__", "__sub__",
              "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__neg__", "__pow__"):
    setattr(ByteImages, _name, _on_floats(_name))
ByteImages.__hash__ = object.__hash__  # defining __eq__ would otherwise make it unhashable
