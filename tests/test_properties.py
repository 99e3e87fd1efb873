"""Property-based tests: random and mutated inputs to the file readers and the config
parser never raise anything but the library's own errors."""

import gzip

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_idx
from pyro_vae.config import Config
from pyro_vae.data.readers import read_amat, read_idx
from pyro_vae.errors import ConfigError, DataError, PyroVAEError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _valid_idx(tmp_path):
    path = tmp_path / "valid-idx3-ubyte"
    write_idx(path, np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))
    return path.read_bytes()


@SETTINGS
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_random_bytes_never_crash_the_idx_reader(tmp_path, data, gz):
    path = tmp_path / ("r.gz" if gz else "r")
    path.write_bytes(data)
    try:
        array = read_idx(path)
    except DataError:
        return
    if not gz:
        assert array.ndim == data[3]


@SETTINGS
@given(cut=st.integers(0, 200), flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
       gz=st.booleans())
def test_mutated_idx_files_never_crash(tmp_path, cut, flips, gz):
    raw = bytearray(_valid_idx(tmp_path))
    for where, value in flips:
        if where < len(raw):
            raw[where] = value
    raw = bytes(raw[: max(0, len(raw) - cut % (len(raw) + 1))])
    path = tmp_path / "m-idx3-ubyte"
    if gz:
        packed = gzip.compress(raw)
        raw = packed[: len(packed) - cut % 7]
        path = tmp_path / "m-idx3-ubyte.gz"
    path.write_bytes(raw)
    try:
        read_idx(path, expected_ndim=3)
    except DataError:
        pass


@SETTINGS
@given(text=st.text(alphabet="01 .\n\t-+e", max_size=4000), width=st.sampled_from([1, 3, 784]))
def test_random_amat_text_never_crashes(tmp_path, text, width):
    path = tmp_path / "r.amat"
    path.write_text(text)
    try:
        array = read_amat(path, width=width)
    except DataError:
        return
    assert array.shape[1] == width and set(np.unique(array)) <= {0, 1}


@SETTINGS
@given(data=st.binary(max_size=500))
def test_random_bytes_never_crash_the_amat_reader(tmp_path, data):
    path = tmp_path / "b.amat"
    path.write_bytes(data)
    try:
        read_amat(path, width=4)
    except DataError:
        pass


scalars = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(),
                    st.lists(st.integers(-5, 5000), max_size=3))
keys = st.one_of(st.sampled_from(["latent_dim", "hidden_dims", "learning_rate", "epochs", "dataset", "binarize",
                                  "likelihood", "k", "beta", "device", "seed", "lr_decay"]), st.text(max_size=6))
tables = st.dictionaries(st.sampled_from(["data", "model", "train", "other"]),
                         st.one_of(st.dictionaries(keys, scalars, max_size=4), scalars), max_size=3)


@SETTINGS
@given(raw=tables)
def test_random_config_tables_give_a_config_or_a_config_error(raw):
    try:
        Config.from_dict(raw).validate()
    except ConfigError:
        pass


@SETTINGS
@given(text=st.text(max_size=200))
def test_random_config_text_never_crashes(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    try:
        Config.load(path).validate()
    except PyroVAEError:
        pass
