"""Finding and downloading data: search order, SHA-256 checks, a local HTTP mirror."""

import functools
import gzip
import hashlib
import http.server
import threading

import pytest

from conftest import FASHION_DIR, require_path
from pyro_vae.data import sources
from pyro_vae.data.sources import DataFile, DataSource, download_file, locate
from pyro_vae.errors import DataError


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving the folder it returns, shut down afterwards."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PYRO_VAE_DATA", raising=False)
    monkeypatch.delenv("PYRO_VAE_MIRROR", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_ROOT", tmp_path / "no-debian")


def _fixture_source(root, content=b"pyro-vae fixture\n" * 100):
    (root / "data.bin.gz").write_bytes(gzip.compress(content))
    spec = DataFile("data.bin.gz", hashlib.sha256(content).hexdigest())
    return DataSource("fixture", {"data": spec}, ()), spec


def test_download_verifies_and_lands_in_the_cache(mirror, tmp_path):
    root, url = mirror
    source, spec = _fixture_source(root)
    source = DataSource("fixture", source.files, (url,))
    paths = locate(source)
    assert paths["data"] == tmp_path / "cache" / "pyro-vae" / "fixture" / "data.bin.gz"
    assert gzip.decompress(paths["data"].read_bytes()).startswith(b"pyro-vae fixture")
    # Found in the cache the second time: the mirror may disappear.
    (root / "data.bin.gz").unlink()
    assert locate(source)["data"] == paths["data"]


def test_corrupted_download_is_rejected_and_never_replaces_a_good_file(mirror, tmp_path):
    root, url = mirror
    source, spec = _fixture_source(root)
    good = b"pyro-vae fixture\n" * 100
    (root / "data.bin.gz").write_bytes(gzip.compress(good.replace(b"fixture", b"fixturE", 1)))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "data.bin.gz").write_bytes(gzip.compress(good))
    before = (dest / "data.bin.gz").read_bytes()
    with pytest.raises(DataError, match="SHA-256") as refused:
        download_file(spec, (url,), dest)
    # the mirror's copy is named, not the temporary file (gone by then) with "delete it" advice
    assert "its copy does not match the published SHA-256" in str(refused.value)
    assert ".part" not in str(refused.value) and "delete it" not in str(refused.value)
    assert (dest / "data.bin.gz").read_bytes() == before
    assert sorted(p.name for p in dest.iterdir()) == ["data.bin.gz"]  # no temporary left behind


def test_truncated_download_and_missing_mirror_are_reported(mirror, tmp_path):
    root, url = mirror
    source, spec = _fixture_source(root)
    (root / "data.bin.gz").write_bytes((root / "data.bin.gz").read_bytes()[:-12])
    with pytest.raises(DataError, match="could not download"):
        download_file(spec, (url, url + "nowhere/"), tmp_path / "d")
    assert not any((tmp_path / "d").iterdir())


def test_search_order_prefers_data_dir_then_env(tmp_path, monkeypatch):
    content = b"abc" * 50
    spec = DataFile("f.gz", hashlib.sha256(content).hexdigest())
    source = DataSource("thing", {"f": spec}, ())
    first, second = tmp_path / "first", tmp_path / "second" / "thing"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "f.gz").write_bytes(gzip.compress(content))
    (second / "f").write_bytes(content)
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path / "second"))
    assert locate(source, first)["f"] == first / "f.gz"
    assert locate(source)["f"] == second / "f.gz"
    with pytest.raises(DataError, match="does not exist"):
        locate(source, tmp_path / "nope")


def test_a_corrupt_local_file_is_refused_with_its_path(tmp_path):
    spec = DataFile("f.gz", "0" * 64)
    (tmp_path / "f.gz").write_bytes(gzip.compress(b"whatever"))
    with pytest.raises(DataError, match="f.gz does not match its published SHA-256"):
        locate(DataSource("x", {"f": spec}, ()), tmp_path, download=False)


def test_fashion_mnist_downloads_from_a_mirror_through_the_named_data_set(mirror, monkeypatch):
    """The real path: `fashion-mnist` found nowhere, fetched from $PYRO_VAE_MIRROR, verified."""
    require_path(FASHION_DIR / "train-labels-idx1-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    root, url = mirror
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (root / name).write_bytes((FASHION_DIR / name).read_bytes())
    monkeypatch.setenv("PYRO_VAE_MIRROR", url)
    paths = locate(sources.FASHION_MNIST, roles=("train_labels", "test_labels"))
    assert all(p.parent.name == "fashion-mnist" and "cache" in str(p) for p in paths.values())
    # A mirror serving a tampered copy is refused.
    labels = gzip.decompress((FASHION_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    tampered = labels[:-1] + bytes([(labels[-1] + 1) % 10])
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(tampered))
    paths["test_labels"].unlink()
    with pytest.raises(DataError, match="t10k-labels"):
        sources.download_file(sources.FASHION_MNIST.files["test_labels"], (url,), paths["test_labels"].parent)


def test_a_cache_that_cannot_be_created_is_one_sentence_not_a_traceback(mirror, tmp_path, monkeypatch):
    root, url = mirror
    source, spec = _fixture_source(root)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(DataError, match="cannot download data.bin.gz into .*not-a-folder.*XDG_CACHE_HOME"):
        locate(DataSource("fixture", source.files, (url,)))
    assert blocker.read_text() == "a file where the cache folder should be"


def test_a_pyro_vae_data_that_is_no_folder_is_refused_not_passed_over(tmp_path, monkeypatch):
    content = b"abc" * 50
    source = DataSource("thing", {"f": DataFile("f.gz", hashlib.sha256(content).hexdigest())}, ())
    elsewhere = tmp_path / "cache" / "pyro-vae" / "thing"  # a good copy later in the search order
    elsewhere.mkdir(parents=True)
    (elsewhere / "f.gz").write_bytes(gzip.compress(content))
    monkeypatch.setenv("PYRO_VAE_DATA", str(tmp_path / "mistyped"))
    with pytest.raises(DataError, match=r"\$PYRO_VAE_DATA names .*mistyped, which is not an existing folder"):
        locate(source)
    given = tmp_path / "given"  # found in --data-dir first: the variable is never consulted
    given.mkdir()
    (given / "f.gz").write_bytes(gzip.compress(content))
    assert locate(source, given)["f"] == given / "f.gz"


@pytest.fixture
def not_http():
    """A server on 127.0.0.1 that answers every request with something other than HTTP."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()


def test_a_mirror_that_does_not_speak_http_is_a_failed_mirror_not_a_traceback(not_http, mirror, tmp_path):
    root, url = mirror
    source, spec = _fixture_source(root)
    with pytest.raises(DataError, match=r"could not download .*127\.0\.0\.1.*SSH-2\.0"):
        download_file(spec, (not_http,), tmp_path / "d")
    # the next mirror is still tried
    assert download_file(spec, (not_http, url), tmp_path / "d") == tmp_path / "d" / "data.bin.gz"


def test_a_pyro_vae_mirror_that_is_no_url_is_one_sentence(mirror, tmp_path, monkeypatch):
    root, url = mirror
    source, spec = _fixture_source(root)
    monkeypatch.setenv("PYRO_VAE_MIRROR", str(root))  # a folder, not file:// + folder
    with pytest.raises(DataError, match=r"\$PYRO_VAE_MIRROR is .*mirror, which is not a base URL"):
        locate(DataSource("fixture", source.files, (url,)))
    monkeypatch.setenv("PYRO_VAE_MIRROR", root.as_uri() + "/")
    assert locate(DataSource("fixture", source.files, ()))["data"].is_file()


def test_a_data_dir_holding_none_of_the_files_is_refused_not_passed_over(tmp_path, monkeypatch):
    content = b"abc" * 50
    source = DataSource("thing", {"f": DataFile("f.gz", hashlib.sha256(content).hexdigest()),
                                  "g": DataFile("g.gz", hashlib.sha256(content).hexdigest())}, ())
    elsewhere = tmp_path / "cache" / "pyro-vae" / "thing"  # good copies later in the search order
    elsewhere.mkdir(parents=True)
    for name in ("f.gz", "g.gz"):
        (elsewhere / name).write_bytes(gzip.compress(content))
    given = tmp_path / "given"
    given.mkdir()
    (given / "notes.txt").write_text("the wrong folder")
    with pytest.raises(DataError, match=r"data directory .*given holds none of the files of 'thing' \(f.gz, g.gz\)"):
        locate(source, given)
    (given / "thing").mkdir()  # one of them, in the data set's sub-folder: the other is found elsewhere
    (given / "thing" / "f.gz").write_bytes(gzip.compress(content))
    assert locate(source, given) == {"f": given / "thing" / "f.gz", "g": elsewhere / "g.gz"}


def test_another_data_sets_file_is_named_as_such_not_to_be_deleted(tmp_path):
    """MNIST and Fashion-MNIST files have the same names: a --data-dir of one given for the other was told
    'delete it so a good copy can be found or downloaded', of a good file."""
    require_path(FASHION_DIR / "t10k-images-idx3-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    from pyro_vae.data.datasets import load_dataset

    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((FASHION_DIR / name).read_bytes())
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz is t10k-labels-idx1-ubyte.gz of data set "
                                        r"'fashion-mnist', not of 'mnist'; give --dataset fashion-mnist for it"):
        locate(sources.MNIST, tmp_path, download=False, roles=("test_labels",))
    with pytest.raises(DataError, match=r"is t10k-images-idx3-ubyte.gz of data set 'fashion-mnist', not of 'mnist'"):
        load_dataset("mnist-t10k", str(tmp_path), download=False)  # checked as it is read
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes((FASHION_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz holds t10k-labels-idx1-ubyte.gz of "
                                        r"'fashion-mnist' under another name; give it its own name"):
        locate(sources.FASHION_MNIST, tmp_path, download=False, roles=("train_labels",))
    assert all(p.is_file() for p in tmp_path.iterdir())
