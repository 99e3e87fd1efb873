"""Data: file readers, sources (find, download, verify) and named data sets."""

from pyro_vae.data.datasets import ImageDataset, Split, load_dataset
from pyro_vae.data.readers import read_amat, read_idx

__all__ = ["ImageDataset", "Split", "load_dataset", "read_amat", "read_idx"]
