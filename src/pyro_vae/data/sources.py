"""Where a named data set's files come from: found on disk, or downloaded and verified.

Files are looked for, in order, in

1. the ``--data-dir`` folder (or its ``<name>/`` sub-folder; refused if it holds none of the files),
2. ``$PYRO_VAE_DATA`` (or its ``<name>/`` sub-folder),
3. the user cache, ``$XDG_CACHE_HOME/pyro-vae/<name>`` (``~/.cache/pyro-vae/<name>``),
4. Debian's ``/usr/share/datasets/<name>/``,

and failing those downloaded from the official mirrors into the cache (``$PYRO_VAE_MIRROR``,
a base URL, is tried first). Each file is checked against the SHA-256 of its
*uncompressed* content, so a gzipped, re-gzipped or plain copy of the same data all pass.
A download goes to a temporary file, is verified, and only then renamed into place, so a
bad or broken download never replaces a good file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from pyro_vae.errors import DataError

DEBIAN_ROOT = Path("/usr/share/datasets")


@dataclass(frozen=True)
class DataFile:
    """One file of a data set: its name on the mirrors and the SHA-256 of its content."""

    name: str
    sha256: str

    def candidates(self) -> tuple[str, ...]:
        """Names it may have on disk: as published, gzipped, or un-gzipped."""
        stem = self.name[:-3] if self.name.endswith(".gz") else self.name
        return (self.name, stem + ".gz", stem) if self.name.endswith(".gz") else (self.name, stem + ".gz")


@dataclass(frozen=True)
class DataSource:
    """A named data set's files and the mirrors that serve them (base URLs)."""

    name: str
    files: dict[str, DataFile]
    mirrors: tuple[str, ...]


FASHION_MNIST = DataSource(
    "fashion-mnist",
    {
        "train_images": DataFile("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train_labels": DataFile("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "test_images": DataFile("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "test_labels": DataFile("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)

MNIST = DataSource(
    "mnist",
    {
        "train_images": DataFile("train-images-idx3-ubyte.gz", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train_labels": DataFile("train-labels-idx1-ubyte.gz", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "test_images": DataFile("t10k-images-idx3-ubyte.gz", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "test_labels": DataFile("t10k-labels-idx1-ubyte.gz", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
)

BINARIZED_MNIST = DataSource(
    "binarized-mnist",
    {
        "train_images": DataFile("binarized_mnist_train.amat", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
        "valid_images": DataFile("binarized_mnist_valid.amat", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
        "test_images": DataFile("binarized_mnist_test.amat", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
    },
    ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",),
)

SOURCES = {source.name: source for source in (FASHION_MNIST, MNIST, BINARIZED_MNIST)}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyro-vae"


def search_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for data set ``name``, in order."""
    dirs = _root_dirs(name, data_dir) + _root_dirs(name, os.environ.get("PYRO_VAE_DATA"))
    dirs.append(cache_dir() / name)
    dirs.append(DEBIAN_ROOT / name)
    return list(dict.fromkeys(dirs))


def _root_dirs(name: str, root: str | Path | None) -> list[Path]:
    """``root`` and its ``<name>/`` sub-folders (``-`` or ``_``), or none without a root."""
    if not root:
        return []
    root = Path(root).expanduser()
    return [root] + [root / v for v in dict.fromkeys((name, name.replace("-", "_")))]


def check_env_data_dir() -> None:
    """``$PYRO_VAE_DATA``, when set, must be a folder: a mistyped one would be passed over
    in silence and the data taken from elsewhere or downloaded."""
    root = os.environ.get("PYRO_VAE_DATA")
    if root and not Path(root).expanduser().is_dir():
        raise DataError(f"$PYRO_VAE_DATA names {root}, which is not an existing folder; correct it or unset it.")


def check_data_dir(data_dir: str | Path | None) -> None:
    """An explicit ``--data-dir`` must exist and be readable."""
    if not data_dir:
        return
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist; check --data-dir.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"data directory {path} cannot be read; check its permissions.")


def content_sha256(path: Path) -> str:
    """SHA-256 of the file's uncompressed content (gunzipped if it ends in ``.gz``)."""
    digest = hashlib.sha256()
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"data file {path} is corrupt or unreadable ({err}); download it again.") from None
    return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
    """Refuse a file found on disk whose content is not ``expected`` (it may be another data set's)."""
    _check_sha256(path, content_sha256(path), expected)


def verify_content(path: Path, content: bytes, expected: str) -> None:
    """:func:`verify` for ``path``'s uncompressed ``content`` already in memory (a reader's
    bytes), so a loaded file is un-gzipped once, not once to check it and once to read it."""
    _check_sha256(path, hashlib.sha256(content).hexdigest(), expected)


def _check_sha256(path: Path, actual: str, expected: str) -> None:
    if actual == expected:
        return
    known = next(((source, spec) for source in SOURCES.values() for spec in source.files.values()
                  if spec.sha256 == actual), None)
    wanted = next((source for source in SOURCES.values() for spec in source.files.values()
                   if spec.sha256 == expected), None)
    if known is not None:  # MNIST and Fashion-MNIST share file names: "delete it" would delete a good file
        source, spec = known
        if source is wanted:
            raise DataError(f"data file {path} holds {spec.name} of '{source.name}' under another name; give it "
                            "its own name.")
        raise DataError(f"data file {path} is {spec.name} of data set '{source.name}'"
                        f"{'' if wanted is None else f', not of {wanted.name!r}'}; give --dataset {source.name} for it, "
                        "or a --data-dir holding the files of the data set you asked for.")
    raise DataError(f"data file {path} does not match its published SHA-256 (expected {expected[:12]}..., "
                    f"got {actual[:12]}...); delete it so a good copy can be found or downloaded.")


def locate(source: DataSource, data_dir: str | Path | None = None, download: bool = True,
           roles: tuple[str, ...] | None = None, verified: bool = True) -> dict[str, Path]:
    """Paths of ``source``'s files (``roles``, default all), verified, downloading if needed.
    With ``verified=False`` a file found on disk is not checked here: the caller reads it and
    checks its bytes (:func:`verify_content`; the readers' ``sha256=``) before using them."""
    check_data_dir(data_dir)
    wanted = roles or tuple(source.files)
    if data_dir and not any(_find_on_disk(source.files[role], _root_dirs(source.name, data_dir)) for role in wanted):
        # it would be passed over in silence (some of the files there, the others found elsewhere, is fine)
        raise DataError(f"data directory {Path(data_dir).expanduser()} holds none of the files of '{source.name}' "
                        f"({', '.join(source.files[role].name for role in wanted)}), neither directly nor in a "
                        f"{source.name}/ sub-folder; put them there, or drop --data-dir to find them in the usual "
                        "places or download them.")
    found: dict[str, Path] = {}
    for role in wanted:
        spec = source.files[role]
        path = _find_on_disk(spec, _root_dirs(source.name, data_dir))
        if path is None:  # past --data-dir: $PYRO_VAE_DATA is looked in next
            check_env_data_dir()
            path = _find_on_disk(spec, search_dirs(source.name, data_dir))
        if path is None:
            if not download:
                raise DataError(_missing_message(source, spec, data_dir))
            path = download_file(spec, source.mirrors, cache_dir() / source.name, source)
        elif verified:  # a downloaded copy was verified before it was renamed into place
            verify(path, spec.sha256)
        found[role] = path
    return found


def _find_on_disk(spec: DataFile, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for candidate in spec.candidates():
            path = folder / candidate
            if path.is_file():
                return path
    return None


def _missing_message(source: DataSource, spec: DataFile, data_dir) -> str:
    where = ", ".join(str(d) for d in search_dirs(source.name, data_dir))
    hint = ""
    if source.name == "fashion-mnist":
        hint = " (on Debian: apt-get install dataset-fashion-mnist)"
    return (f"cannot find {spec.name} of data set '{source.name}' (looked in {where}) and could not "
            f"download it; put the file in a folder given by --data-dir{hint}.")


def mirrors_for(source: DataSource) -> tuple[str, ...]:
    override = os.environ.get("PYRO_VAE_MIRROR")
    if override and "://" not in override:  # urllib refuses it with a ValueError per file
        raise DataError(f"$PYRO_VAE_MIRROR is {override}, which is not a base URL; give one such as "
                        "https://host/path/ (file:///path/ for a local folder), or unset it.")
    return ((override,) if override else ()) + source.mirrors


def download_file(spec: DataFile, mirrors: tuple[str, ...], dest_dir: Path,
                  source: DataSource | None = None, timeout: float = 30.0) -> Path:
    """Download ``spec`` from the first mirror that serves a verified copy.

    The bytes go to a temporary file in ``dest_dir``; only a copy whose content matches
    ``spec.sha256`` is renamed to ``dest_dir / spec.name``. Raises :class:`DataError`
    naming every mirror's failure if none does.
    """
    if source is not None:
        mirrors = mirrors_for(source)
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + spec.name
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=dest_dir)
        except OSError as err:  # not the mirror's fault: no other mirror can help
            raise DataError(f"cannot download {spec.name} into {dest_dir} ({err.strerror or err}); make that folder "
                            "writable, set XDG_CACHE_HOME to a writable folder, or put the file in a folder given "
                            "by --data-dir.") from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, handle)
            # Name the temporary copy like the target so .gz content is un-gzipped when hashed.
            checked = tmp.with_name(tmp.name + (".gz" if spec.name.endswith(".gz") else ""))
            tmp.rename(checked)
            tmp = checked
            if content_sha256(tmp) != spec.sha256:  # said of the mirror: the temporary copy is gone already
                failures.append(f"{url}: its copy does not match the published SHA-256 (corrupt or truncated)")
                continue
            target = dest_dir / spec.name
            os.replace(tmp, target)
            return target
        # ValueError: a mirror that is no URL (a bare path); HTTPException: a server that does not
        # speak HTTP (BadStatusLine) or breaks off mid-reply.
        except (urllib.error.URLError, OSError, DataError, ValueError, http.client.HTTPException) as err:
            failures.append(f"{url}: {getattr(err, 'reason', None) or err or type(err).__name__}")
        finally:
            tmp.unlink(missing_ok=True)
    name = source.name if source else spec.name
    raise DataError(f"could not download a verified copy of {spec.name} for '{name}' ({'; '.join(failures)}); "
                    "put the file in a folder given by --data-dir.")
