"""MNIST download: a local HTTP server on 127.0.0.1 serves copies of the real files.

No test here touches the internet: the mirror is always 127.0.0.1 (or a closed port).
"""

import functools
import gzip
import http.server
import re
import shutil
import socket
import threading

import numpy as np
import pytest

import jnet.data as data
from jnet.data import DataError

NAMES = list(data.MNIST_SHA256)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if not self.path.startswith("/short/"):
            return super().do_GET()
        # A connection that drops mid-file: promises 1000 bytes, sends 10.
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\0" * 8)
        self.close_connection = True


@pytest.fixture(scope="module")
def mirror(data_dir, tmp_path_factory):
    """Base URL of a server holding good/ (the real files) and bad/ (one corrupted)."""
    root = tmp_path_factory.mktemp("mirror")
    for sub in ("good", "bad"):
        (root / sub).mkdir()
        for name in NAMES:
            shutil.copy(data_dir / "mnist" / name, root / sub / name)
    # bad/: a well-formed gzip of slightly different labels, so only the checksum can tell.
    labels = gzip.decompress((root / "bad" / NAMES[1]).read_bytes())
    (root / "bad" / NAMES[1]).write_bytes(gzip.compress(labels[:-1] + b"\x07"))
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy from the environment must not intercept requests to 127.0.0.1.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens here now: connection refused


@pytest.mark.slow  # serves and checks all four files
def test_download_missing_files_then_load(mirror, data_dir, tmp_path):
    folder = tmp_path / "mnist"
    (x_train, y_train), (x_test, y_test) = data.mnist(folder, mirror=mirror + "/good/")
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)  # no temp files left
    for name in NAMES:
        assert data.sha256(folder / name) == data.MNIST_SHA256[name]
    (rx_train, ry_train), (rx_test, ry_test) = data.mnist(data_dir / "mnist", download=False)
    np.testing.assert_array_equal(x_train, rx_train)
    np.testing.assert_array_equal(y_test, ry_test)


def test_download_only_what_is_missing(mirror, data_dir, tmp_path):
    shutil.copy(data_dir / "mnist" / NAMES[0], tmp_path / NAMES[0])
    before = (tmp_path / NAMES[0]).stat().st_mtime_ns
    data.download_mnist(tmp_path, mirror=mirror + "/good")
    assert (tmp_path / NAMES[0]).stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


def test_mirror_from_environment(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("JNET_MNIST_MIRROR", mirror + "/good/")
    data.download_mnist(tmp_path, files=[NAMES[3]])
    assert [p.name for p in tmp_path.iterdir()] == [NAMES[3]]


def test_wrong_checksum_discards_download(mirror, tmp_path):
    with pytest.raises(DataError) as e:
        data.download_mnist(tmp_path, mirror=mirror + "/bad/", files=[NAMES[1]])
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / NAMES[1]) + ": downloaded from http://127.0.0.1")
    assert f"SHA-256 mismatch: expected {data.MNIST_SHA256[NAMES[1]]}, got " in msg
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file stays


def test_http_error_names_url(mirror, tmp_path):
    with pytest.raises(DataError, match=r"/nowhere/train-images-idx3-ubyte.gz: .*HTTP 404"):
        data.download_mnist(tmp_path, mirror=mirror + "/nowhere/", files=[NAMES[0]])
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_leaves_nothing(mirror, tmp_path):
    with pytest.raises(DataError, match=r"/short/t10k-labels-idx1-ubyte.gz: cannot download"):
        data.download_mnist(tmp_path, mirror=mirror + "/short/", files=[NAMES[3]])
    assert list(tmp_path.iterdir()) == []


def test_offline_error_says_where_to_put_files(tmp_path):
    folder = tmp_path / "mnist"
    with pytest.raises(DataError, match="cannot download") as e:
        data.mnist(folder, mirror=closed_port_url())
    msg = str(e.value)
    assert str(folder) in msg and all(name in msg for name in NAMES)
    assert "JNET_DATA_DIR" in msg and "data_dir" in msg
    assert not any(folder.iterdir())


def test_download_false_never_fetches(tmp_path):
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte.gz"):
        data.mnist(tmp_path, download=False, mirror=closed_port_url())


@pytest.mark.parametrize("bad", ["not-a-url", "/a/local/folder", "ftp://example.com/mnist/"])
def test_mirror_must_be_an_http_url(tmp_path, monkeypatch, bad):
    with pytest.raises(DataError, match=re.escape(f"mirror={bad!r} is not an http(s) URL")):
        data.mnist(tmp_path, mirror=bad)
    monkeypatch.setenv("JNET_MNIST_MIRROR", bad)  # named as where the bad mirror came from
    with pytest.raises(DataError, match=re.escape(f"$JNET_MNIST_MIRROR={bad!r} is not an")):
        data.download_mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []
