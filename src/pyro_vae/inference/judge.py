r"""An independent classifier that judges generated images: the "judge" of label fidelity.

The judge is a small convolutional network trained on the *real* training images and labels
of a data set (grey levels in [0, 1], never binarized, all of its training split whatever a
run's ``--train-limit``), kept apart from every VAE. Its epoch is chosen by validation
accuracy alone; its test accuracy is measured once, on the test split, with the binomial
standard error :math:`\sqrt{a (1 - a) / n}`.

Training it takes minutes, so it is cached on disk (:class:`JudgeCache`) under a key made of
the data set's name, the SHA-256 of its images and labels as loaded (every split), and the
judge's settings: the same data and settings reuse the saved network, changed data or
settings train a new one. The cache lives in ``$PYRO_VAE_CLASSIFIER_CACHE``, or
``~/.cache/pyro-vae/classifiers`` (``$XDG_CACHE_HOME`` honoured); never inside the package.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.data.datasets import ImageDataset, Split
from pyro_vae.data.folders import ByteImages
from pyro_vae.errors import DataError
from pyro_vae.inference.randomness import random_state_kept

#: Where the judges are kept when neither an option nor the environment says.
CACHE_ENV = "PYRO_VAE_CLASSIFIER_CACHE"
#: Bumped when the network or its training changes, so old cache entries are not reused.
JUDGE_VERSION = 2


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is built and trained. ``channels``: the two conv layers' widths;
    ``hidden``: the dense layer; at most ``epochs`` passes over the training split in batches
    of ``batch_size`` (Adam, ``learning_rate``), stopping after ``patience`` epochs without a
    better validation accuracy; ``seed`` fixes the initialisation and the batch order."""

    channels: tuple[int, int] = (16, 32)
    hidden: int = 128
    epochs: int = 6
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 2
    seed: int = 0

    def key_fields(self) -> dict:
        return {**asdict(self), "channels": list(self.channels), "version": JUDGE_VERSION}


class JudgeNet(nn.Module):
    """Images ``[N, C, H, W]`` in [0, 1] -> class logits ``[N, K]``: two 3x3 conv layers of
    stride 2 (ReLU; 28 -> 14 -> 7 pixels, a third of the work of stride 1 and pooling),
    pooled to 7x7 whatever the image size, a dense layer with dropout 0.25, the logits."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, settings: JudgeSettings = JudgeSettings()):
        super().__init__()
        c1, c2 = settings.channels
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.net = nn.Sequential(
            nn.Conv2d(image_shape[0], c1, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(7), nn.Flatten(),
            nn.Linear(c2 * 49, settings.hidden), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(settings.hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The most probable class of each image ``[N]`` (int64), in eval mode."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [self(images[i:i + batch_size].to(device)).argmax(-1).cpu() for i in range(0, len(images), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@dataclass
class Judge:
    """A trained judge and its record: what it was trained on and how well it classifies
    real test images (``record``: data set, checksum, settings, best epoch, validation and
    test accuracy with its standard error, per-class test accuracy, training seconds)."""

    net: JudgeNet
    record: dict
    from_cache: bool = False

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.predict(images)

    @property
    def test_accuracy(self) -> float:
        return self.record["test_accuracy"]

    @property
    def test_accuracy_stderr(self) -> float:
        return self.record["test_accuracy_stderr"]


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of a proportion ``p`` measured on ``n`` independent trials:
    sqrt(p (1 - p) / n) (0 when p is 0 or 1; NaN for n = 0)."""
    return math.sqrt(p * (1.0 - p) / n) if n else float("nan")


def _split_bytes(split: Split) -> bytes:
    images = split.images
    if isinstance(images, ByteImages):
        array = images.data[images.rows].numpy()
    else:
        array = images.detach().cpu().numpy()
    labels = b"" if split.labels is None else split.labels.cpu().numpy().astype(np.int64).tobytes()
    return np.ascontiguousarray(array).tobytes() + b"|" + labels


def dataset_checksum(dataset: ImageDataset) -> str:
    """SHA-256 of every split's images and labels as loaded (bytes where held as bytes)."""
    digest = hashlib.sha256()
    for name in ("train", "valid", "test"):
        split = dataset.split(name)
        digest.update(f"{name}:{tuple(split.images.shape)}:".encode())
        digest.update(_split_bytes(split))
    return digest.hexdigest()


def _accuracy(net: JudgeNet, split: Split) -> tuple[float, torch.Tensor]:
    predicted = net.predict(split.images)
    hits = predicted == split.labels.cpu()
    return hits.float().mean().item(), hits


def train_judge(dataset: ImageDataset, settings: JudgeSettings = JudgeSettings(), log=None) -> Judge:
    """Train a :class:`JudgeNet` on ``dataset``'s training split (cross-entropy, Adam), keep
    the epoch with the best validation accuracy, and measure it once on the test split.
    ``dataset`` must be labelled and should hold the real grey-level images."""
    if dataset.train.labels is None or dataset.test.labels is None:
        raise DataError(f"'{dataset.name}' has no labels, so no classifier can be trained to judge its classes.")
    num_classes = len(dataset.class_names) or int(dataset.train.labels.max()) + 1
    started = time.perf_counter()
    with random_state_kept():  # the caller's random state is left as it was
        torch.manual_seed(settings.seed)
        net = JudgeNet(dataset.image_shape, num_classes, settings)
        optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
        generator = torch.Generator().manual_seed(settings.seed)
        images, labels = dataset.train.images, dataset.train.labels.cpu()
        best = {"valid_accuracy": -1.0}
        best_state, since_best = None, 0
        for epoch in range(1, settings.epochs + 1):
            net.train()
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(order), settings.batch_size):
                rows = order[start:start + settings.batch_size]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(net(images[rows].cpu()), labels[rows]).backward()
                optimizer.step()
            valid, _ = _accuracy(net, dataset.valid)
            if log is not None:
                error = binomial_stderr(valid, len(dataset.valid.labels))  # over the validation images
                log(f"label judge epoch {epoch}: validation accuracy {100 * valid:.2f} ± {100 * error:.2f}%")
            if valid > best["valid_accuracy"]:
                best, best_state, since_best = {"valid_accuracy": valid, "best_epoch": epoch}, copy.deepcopy(
                    net.state_dict()), 0
            else:
                since_best += 1
                if since_best >= settings.patience:
                    break
    net.load_state_dict(best_state)
    net.eval()
    test, hits = _accuracy(net, dataset.test)
    test_labels = dataset.test.labels.cpu()
    per_class = [hits[test_labels == c].float().mean().item() if (test_labels == c).any() else None
                 for c in range(num_classes)]  # None: no test image of that class
    record = {
        "dataset": dataset.name, "data_sha256": dataset_checksum(dataset), "settings": settings.key_fields(),
        "num_classes": num_classes, "image_shape": list(dataset.image_shape),
        "train_images": len(dataset.train), "epochs_run": epoch, **best,
        "test_accuracy": test, "test_accuracy_stderr": binomial_stderr(test, len(test_labels)),
        "test_images": len(test_labels), "test_accuracy_per_class": per_class,
        "train_seconds": time.perf_counter() - started,
        "selection": "best validation accuracy (the test split is scored once, at the end)",
    }
    return Judge(net, record)


def default_cache_dir() -> Path:
    """``$PYRO_VAE_CLASSIFIER_CACHE``, else ``<user cache>/pyro-vae/classifiers``."""
    from pyro_vae.data.sources import cache_dir

    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else cache_dir() / "classifiers"


@dataclass
class JudgeCache:
    """Judges on disk, one folder per key (``<dataset>-<first 16 hex digits of the key>``)
    holding ``judge.pt`` (the network's parameters and its record) written atomically."""

    root: Path = field(default_factory=default_cache_dir)

    @staticmethod
    def key(dataset: ImageDataset, settings: JudgeSettings, checksum: str | None = None) -> str:
        payload = json.dumps({"dataset": dataset.name, "data_sha256": checksum or dataset_checksum(dataset),
                              "settings": settings.key_fields()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def path(self, dataset: ImageDataset, settings: JudgeSettings, checksum: str | None = None) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset.name)
        return Path(self.root) / f"{safe}-{self.key(dataset, settings, checksum)[:16]}" / "judge.pt"

    def load_or_train(self, dataset: ImageDataset, settings: JudgeSettings = JudgeSettings(), log=None) -> Judge:
        """The cached judge for ``dataset`` and ``settings``, or a new one trained and saved."""
        checksum = dataset_checksum(dataset)
        path = self.path(dataset, settings, checksum)
        if path.is_file():
            try:  # tensors and plain data only: a cache folder may be shared, and a pickle runs code
                saved = torch.load(path, map_location="cpu", weights_only=True)
                record = saved["record"]
                if record.get("data_sha256") == checksum and record.get("settings") == settings.key_fields():
                    net = JudgeNet(tuple(record["image_shape"]), record["num_classes"], settings)
                    net.load_state_dict(saved["state"])
                    net.eval()
                    return Judge(net, record, from_cache=True)
            except Exception as err:  # noqa: BLE001 - truncated, corrupt or foreign: a cache is rebuilt
                if log is not None:
                    log(f"the cached label judge {path} is unreadable ({type(err).__name__}); training it again")
        self._make_folder(path)  # before the judge trains (minutes), not after: a cache path that is a file, say
        if log is not None:
            log(f"training the label judge (a classifier of real '{dataset.name}' images; cached in {path.parent})")
        judge = train_judge(dataset, settings, log)
        self.save(path, judge)
        return judge

    @staticmethod
    def _make_folder(path: Path) -> None:
        from pyro_vae.errors import WriteError

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WriteError(f"cannot create the classifier cache {path.parent} ({err.strerror or err}); set "
                             f"{CACHE_ENV} or --classifier-cache to a writable folder.") from None

    @staticmethod
    def save(path: Path, judge: Judge) -> None:
        from pyro_vae.inference.checkpoint import atomic_write_bytes

        JudgeCache._make_folder(path)
        buffer = io.BytesIO()
        torch.save({"state": judge.net.state_dict(), "record": judge.record}, buffer)
        atomic_write_bytes(path, lambda handle: handle.write(buffer.getvalue()))
