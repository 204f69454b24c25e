"""Downloads against a local http.server on 127.0.0.1: checksums, resume, restart.

The server runs in a thread on a random free loopback port and is shut down after each
test; every request has a timeout, so a hang fails the test instead of blocking it.
"""
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minifcn.npzio import load_npz
from minifcn.weights import REGISTRY, ChecksumError, DownloadError, RemoteFile, download, fetch
from minifcn.weights.download import cache_dir

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; optional Range support and a connection cut after N bytes."""

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        data = srv.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and srv.ranges:
            start = 0 if srv.wrong_range else int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cuts_left > 0:  # promise the whole body, send part of it, hang up
            srv.cuts_left -= 1
            self.wfile.write(body[: srv.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # Loopback only: never let an http_proxy setting route a test request elsewhere.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.requests, srv.ranges, srv.cuts_left, srv.cut_after = {}, [], True, 0, 0
    srv.wrong_range = False  # answer 206 for byte 0 whatever was asked
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def entry_for(data, name="weights.bin", algorithm="sha256", size=True):
    return RemoteFile(name, name, "http://example.invalid/" + name,
                      len(data) if size else None,
                      (algorithm, hashlib.new(algorithm, data).hexdigest()))


OPTIONS = dict(progress=False, timeout=5, backoff=0)


def test_download_and_verify(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path == tmp_path / "weights.bin" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "weights.bin.part").exists()
    # a second call finds the verified file and does not download again
    fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert len(server.requests) == 1


def test_sha256_prefix_and_md5(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    prefix = RemoteFile("w", "weights.bin", "", len(PAYLOAD),
                        ("sha256", hashlib.sha256(PAYLOAD).hexdigest()[:8]))
    assert fetch(prefix, tmp_path / "a", base_url=server.base, **OPTIONS).exists()
    assert fetch(entry_for(PAYLOAD, algorithm="md5"), tmp_path / "b", base_url=server.base,
                 **OPTIONS).exists()


def test_corrupted_file_is_deleted(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD[:-1] + b"\x00"  # same size, last byte wrong
    with pytest.raises(ChecksumError, match="weights.bin: sha256 is .*deleted"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_refused_early(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD + b"extra"
    with pytest.raises(ChecksumError, match="offers 102405 bytes, expected 102400"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert list(tmp_path.iterdir()) == []


def test_cut_connection_then_resume_with_range(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.cuts_left, server.cut_after = 1, 30_000
    with pytest.raises(DownloadError, match="interrupted.*30000 bytes kept.*again to resume"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, retries=0, **OPTIONS)
    assert (tmp_path / "weights.bin.part").stat().st_size == 30_000
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=30000-"]


def test_retries_resume_within_one_call(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.cuts_left, server.cut_after = 2, 20_000
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, retries=3, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=20000-", "bytes=40000-"]


def test_server_without_range_restarts_cleanly(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.ranges = False
    (tmp_path / "weights.bin.part").write_bytes(b"\xff" * 5000)  # stale partial download
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=5000-"]  # asked to resume, got 200, rewrote from 0


def test_unexpected_partial_content_starts_over(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.wrong_range = True
    (tmp_path / "weights.bin.part").write_bytes(PAYLOAD[:5000])
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=5000-", None]


def test_entry_without_size_or_checksum(server, tmp_path):
    server.files["fcn.caffemodel"] = PAYLOAD
    entry = RemoteFile("fcn", "fcn.caffemodel", "", None, None)
    assert fetch(entry, tmp_path, base_url=server.base, **OPTIONS).read_bytes() == PAYLOAD


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)


def test_registry_name_with_env_base_url(server, tmp_path, monkeypatch):
    # A registry entry fetched from the local server (via MINIFCN_DOWNLOAD_BASE): the bytes
    # are not the real file, so the size check must refuse it.
    server.files["vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"] = PAYLOAD
    monkeypatch.setenv("MINIFCN_DOWNLOAD_BASE", server.base)
    monkeypatch.setenv("MINIFCN_HOME", str(tmp_path / "home"))
    with pytest.raises(ChecksumError, match="offers 102400 bytes, expected 58889256"):
        download("vgg16-keras-notop", **OPTIONS)
    assert server.requests == [None]
    assert list((tmp_path / "home").iterdir()) == []


def test_download_then_convert(server, tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    from weights_testutil import to_torchvision, vgg_arrays
    safetensors.save_file(to_torchvision(vgg_arrays()), str(tmp_path / "src.safetensors"))
    data = (tmp_path / "src.safetensors").read_bytes()
    server.files["vgg16.safetensors"] = data
    fetched = download(entry_for(data, "vgg16.safetensors"), tmp_path / "cache",
                       base_url=server.base, **OPTIONS)
    assert fetched.npz == tmp_path / "cache" / "vgg16.npz"
    assert load_npz(fetched.npz)[1]["kind"] == "vgg16"
    raw_only = download(entry_for(data, "vgg16.safetensors"), tmp_path / "raw", convert=False,
                        base_url=server.base, **OPTIONS)
    assert raw_only.npz is None and not (tmp_path / "raw" / "vgg16.npz").exists()


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIFCN_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MINIFCN_HOME")
    assert cache_dir() == tmp_path / "b" / "minifcn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(cache_dir()).endswith(".cache/minifcn")


def test_cli_download(server, tmp_path, monkeypatch, capsys):
    from minifcn.cli import main
    server.files["weights.bin"] = PAYLOAD
    monkeypatch.setitem(REGISTRY, "test-weights", entry_for(PAYLOAD))
    argv = ["download", "test-weights", "--dest", str(tmp_path), "--no-convert",
            "--base-url", server.base, "--quiet"]
    assert main(argv) == 0
    assert (tmp_path / "weights.bin").read_bytes() == PAYLOAD
    assert "downloaded" in capsys.readouterr().out
    server.files["weights.bin"] = b"x" * len(PAYLOAD)
    (tmp_path / "weights.bin").unlink()
    assert main(argv) == 1  # printed by the command line's one error handler
    err = capsys.readouterr().err
    assert err.startswith("minifcn download: error: weights.bin: sha256 is") and err.count("\n") == 1
