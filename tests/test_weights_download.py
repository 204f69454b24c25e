"""Downloads against a local http.server on 127.0.0.1: verification, resume, deadlines, faults.

The server runs in a thread on a random free loopback port and is shut down after each
test. Misbehaving servers are switches on it: a connection cut, a slow drip (body or
headers), a stall, a web page sent with 200, no Range support, no validators, If-Range
ignored. Every drip and stall is bounded on the server side too, so a client that fails to
give up makes the test fail instead of hang.
"""
import _thread
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minifcn.cli import main
from minifcn.npzio import load_npz
from minifcn.weights import REGISTRY, ChecksumError, DownloadError, RemoteFile, download, fetch
from minifcn.weights.download import DeadlineError, WrongContentError, cache_dir
from minifcn.weights.transfer import default_deadline

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
ETAG, LAST_MODIFIED = '"v1"', "Tue, 15 Nov 1994 12:45:26 GMT"
NARROW = 1 / 16  # the channel width of weights_testutil's nets


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` as a static file server would, with switches for faults."""

    def do_GET(self):
        try:
            self.respond()
        except OSError:  # the client hung up (as it should when it gives up)
            pass

    def respond(self):
        srv = self.server
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        srv.requests.append(rng)
        srv.if_ranges.append(if_range)
        if srv.drip_headers:  # a status line, then a header that never ends
            self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
            self.drip(b"x" * 20, every=0.25)
            return
        data = srv.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        # If-Range: the rest only if the client's validator is the file's current one
        same_file = if_range is None or srv.ignore_if_range or if_range in srv.validators.values()
        start = 0
        if rng and srv.ranges and same_file:
            start = 0 if srv.wrong_range else int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", srv.content_type)
        for name, value in srv.validators.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.send_body(body)

    def send_body(self, body):
        srv = self.server
        if srv.cuts_left > 0:  # promise the whole body, send part of it, hang up
            srv.cuts_left -= 1
            self.wfile.write(body[: srv.cut_after])
            self.close_connection = True
            return
        if srv.drip:
            self.drip(body[:10], every=srv.drip)
            return
        if srv.stalls_left > 0:  # half the body, then silence
            srv.stalls_left -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(3)
            return
        if srv.interrupt_after:  # Ctrl-C in the client, then keep it busy, never finishing
            self.wfile.write(body[: srv.interrupt_after])
            self.wfile.flush()
            time.sleep(0.5)  # the client is waiting for more: Ctrl-C lands mid-body
            _thread.interrupt_main()
            self.drip(body[srv.interrupt_after:srv.interrupt_after + 100], every=0.05)
            return
        self.wfile.write(body)

    def drip(self, data, every):
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(every)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # Loopback only: never let an http_proxy setting route a test request elsewhere.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.delenv("MINIFCN_DOWNLOAD_DEADLINE", raising=False)
    monkeypatch.delenv("MINIFCN_DOWNLOAD_BASE", raising=False)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.requests, srv.if_ranges = {}, [], []
    srv.validators = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
    srv.content_type = "application/octet-stream"
    srv.ranges, srv.wrong_range, srv.ignore_if_range = True, False, False
    srv.cuts_left, srv.cut_after, srv.stalls_left = 0, 0, 0
    srv.drip, srv.drip_headers, srv.interrupt_after = 0, False, 0
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


def safetensors_bytes(arrays, tmp_path):
    """A real .safetensors file of ``arrays`` (weights_testutil's narrow nets)."""
    save_file = pytest.importorskip("safetensors.numpy").save_file
    path = tmp_path / "made.safetensors"
    save_file(arrays, str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def fcn8s_bytes(tmp_path, classes=5, drop=()):
    from weights_testutil import fcn_arrays
    arrays = fcn_arrays("fcn8s", classes=classes)
    for key in drop:
        del arrays[key]
    return safetensors_bytes(arrays, tmp_path)


# An FCN-8s with no published checksum: verified by reading it whole.
FCN8S = RemoteFile("fcn8s-test", "fcn8s.safetensors", "http://example.invalid/fcn8s.safetensors",
                   None, None, format="safetensors", kind="fcn8s", classes=5, width=NARROW)
OPTIONS = dict(progress=False, stall_timeout=5, backoff=0)


def assert_nothing_final(folder, name):
    """No file under its final name, and no temporary files of a verification left over."""
    assert not (folder / name).exists()
    assert not [p for p in folder.iterdir() if not p.name.startswith(name + ".part")]


def test_download_and_verify(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path == tmp_path / "weights.bin" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]  # no .part, no record
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


# --- no published checksum: the file is read whole as the expected network --------------

def test_file_without_checksum_is_read_whole_and_kept(server, tmp_path):
    data = fcn8s_bytes(tmp_path)
    server.files["fcn8s.safetensors"] = data
    path = fetch(FCN8S, tmp_path / "dest", base_url=server.base, **OPTIONS)
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["fcn8s.safetensors"]


@pytest.mark.parametrize("case, message", [
    ("lacks a layer", r"missing score_pool3\.weight"),
    ("truncated", r"does not read as fcn8s weights"),
    ("another network", r"holds vgg16 weights, expected fcn8s"),
    ("other classes", r"has 3 classes, expected 5"),
    ("not weights at all", r"its bytes are no known weight format, expected a safetensors"),
])
def test_file_without_checksum_that_does_not_read_is_refused(case, message, server, tmp_path):
    from weights_testutil import vgg_arrays
    data = {"lacks a layer": lambda: fcn8s_bytes(tmp_path, drop=["score_pool3.weight",
                                                                 "score_pool3.bias"]),
            "truncated": lambda: fcn8s_bytes(tmp_path)[:-1000],
            "another network": lambda: safetensors_bytes(vgg_arrays(), tmp_path),
            "other classes": lambda: fcn8s_bytes(tmp_path, classes=3),
            "not weights at all": lambda: PAYLOAD}[case]()
    server.files["fcn8s.safetensors"] = data
    dest = tmp_path / "dest"
    with pytest.raises(WrongContentError, match=rf"^fcn8s\.safetensors: .*{message}.*deleted"):
        fetch(FCN8S, dest, base_url=server.base, **OPTIONS)
    assert list(dest.iterdir()) == []  # no file, no .part, no leftover of the check


def test_damaged_file_in_the_cache_is_fetched_again(server, tmp_path):
    data = fcn8s_bytes(tmp_path)
    server.files["fcn8s.safetensors"] = data
    (tmp_path / "fcn8s.safetensors").write_bytes(data[:5000])  # under the final name, cut
    assert fetch(FCN8S, tmp_path, base_url=server.base, **OPTIONS).read_bytes() == data
    assert len(server.requests) == 1


# --- web pages sent with status 200 -------------------------------------------------------

@pytest.mark.parametrize("content_type, body", [
    ("text/html; charset=utf-8", b"<!DOCTYPE html><html><body>Please sign in</body></html>"),
    ("application/octet-stream", b"\n  <HTML><head><title>Moved</title></head></HTML>"),
])
def test_web_page_with_status_200_is_refused(content_type, body, server, tmp_path):
    server.files["weights.bin"] = body
    server.content_type = content_type
    for entry in (entry_for(PAYLOAD, size=False), FCN8S):  # with and without a checksum
        server.files[entry.filename] = body
        with pytest.raises(WrongContentError, match=rf"^{server.base}/{entry.filename}: got a "
                                                    "web page .* not the file"):
            fetch(entry, tmp_path, base_url=server.base, **OPTIONS)
    assert list(tmp_path.iterdir()) == []


# --- resuming, and stale .part files ---------------------------------------------------------

def test_cut_connection_then_resume_with_range(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.cuts_left, server.cut_after = 1, 30_000
    with pytest.raises(DownloadError, match="interrupted.*30000 bytes kept.*again to resume"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, retries=0, **OPTIONS)
    assert (tmp_path / "weights.bin.part").stat().st_size == 30_000
    assert not (tmp_path / "weights.bin").exists()
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=30000-"]
    assert server.if_ranges == [None, ETAG]  # resumed only if the file is still the same


def test_retries_resume_within_one_call(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.cuts_left, server.cut_after = 2, 20_000
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, retries=3, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=20000-", "bytes=40000-"]


def interrupted_part(server, tmp_path, entry):
    """Leave a genuine .part of ``entry`` (and its record) from a cut download."""
    server.cuts_left, server.cut_after = 1, 30_000
    with pytest.raises(DownloadError, match="interrupted"):
        fetch(entry, tmp_path, base_url=server.base, retries=0, **OPTIONS)
    server.requests.clear()


def test_server_that_ignores_range_starts_over(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    interrupted_part(server, tmp_path, entry_for(PAYLOAD))
    server.ranges = False
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=30000-"]  # asked to resume, got 200, wrote from byte 0


def test_changed_file_is_not_spliced_even_if_the_server_ignores_if_range(server, tmp_path):
    old, new = PAYLOAD, PAYLOAD[::-1]
    server.files["weights.bin"] = old
    interrupted_part(server, tmp_path, entry_for(new))
    server.files["weights.bin"] = new
    server.validators = {"ETag": '"v2"', "Last-Modified": "Wed, 16 Nov 1994 08:12:31 GMT"}
    server.ignore_if_range = True  # answers 206 for the new file to a request for the old
    path = fetch(entry_for(new), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == new
    assert server.requests == ["bytes=30000-", None]  # the 206 refused, then from byte 0


def test_no_resume_without_validators(server, tmp_path):
    # Range is honoured, but with no ETag or Last-Modified the client cannot know that the
    # bytes after its .part belong to the same file: it starts over.
    old, new = PAYLOAD, PAYLOAD[::-1]
    server.validators = {}
    server.files["weights.bin"] = old
    with pytest.raises(DownloadError, match="interrupted.*again to start over"):
        server.cuts_left, server.cut_after = 1, 30_000
        fetch(entry_for(new), tmp_path, base_url=server.base, retries=0, **OPTIONS)
    server.files["weights.bin"] = new
    server.requests.clear()
    assert fetch(entry_for(new), tmp_path, base_url=server.base, **OPTIONS).read_bytes() == new
    assert server.requests == [None]


@pytest.mark.parametrize("record", [
    None,  # no record of where it came from (an older minifcn, a copy)
    '{"url": "http://mirror.invalid/weights.bin", "length": 102400, "etag": "\\"v1\\""}',
    '{"url": "URL", "length": "102400", "etag": "\\"v1\\""}',  # a length that is no number
    '{"url": "URL", "length": 102400}',  # no validator to ask If-Range with
    "not json",
])
def test_stale_part_with_wrong_content_is_discarded(record, server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    (tmp_path / "weights.bin.part").write_bytes(b"\xff" * 5000)
    if record is not None:
        record = record.replace("URL", f"{server.base}/weights.bin")
        (tmp_path / "weights.bin.part.json").write_text(record)
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None]  # never resumed


def test_resumed_file_is_verified_too(server, tmp_path):
    # The record matches (same ETag), but the .part's bytes are another network's: resumed,
    # then refused by the check of the whole file, and deleted.
    from weights_testutil import vgg_arrays
    server.files["fcn8s.safetensors"] = fcn8s_bytes(tmp_path)
    interrupted_part(server, tmp_path, FCN8S)
    part = tmp_path / "fcn8s.safetensors.part"
    part.write_bytes(safetensors_bytes(vgg_arrays(), tmp_path)[:30_000])
    with pytest.raises(WrongContentError, match="fcn8s.safetensors: .*deleted"):
        fetch(FCN8S, tmp_path, base_url=server.base, **OPTIONS)
    assert server.requests == ["bytes=30000-"]
    assert list(tmp_path.iterdir()) == []


def test_unexpected_partial_content_starts_over(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    interrupted_part(server, tmp_path, entry_for(PAYLOAD))
    server.wrong_range = True  # answers 206 from byte 0 whatever was asked
    path = fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=30000-", None]


# --- time: deadline and stalls ---------------------------------------------------------------

def test_default_deadline_follows_the_size():
    # 100 kB/s at least, never under 5 minutes; the torchvision file gets about 92 minutes
    assert default_deadline(553_433_881) == pytest.approx(5534.3, abs=0.1)
    assert default_deadline(1_000_000) == 300
    assert default_deadline(None) == pytest.approx(2**31 / 100_000)


def test_slow_drip_body_hits_the_deadline_cli(server, tmp_path, monkeypatch, capsys):
    server.files["weights.bin"] = PAYLOAD
    server.drip = 1.0  # a byte per second: no socket timeout ever fires
    monkeypatch.setitem(REGISTRY, "test-weights", entry_for(PAYLOAD))
    started = time.monotonic()
    status = main(["download", "test-weights", "--dest", str(tmp_path), "--no-convert",
                   "--base-url", server.base, "--quiet", "--deadline", "1.5"])
    assert status == 1 and time.monotonic() - started < 6  # the server drips for 10 s
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{server.base}/weights.bin: the download deadline of 1.5 s passed" in err
    assert "--deadline SECONDS or MINIFCN_DOWNLOAD_DEADLINE" in err
    assert_nothing_final(tmp_path, "weights.bin")


def test_slow_drip_headers_hit_the_deadline_from_the_environment(server, tmp_path, monkeypatch):
    # Dripped headers keep one read of the HTTP library busy: only a watchdog ends it.
    server.files["weights.bin"] = PAYLOAD
    server.drip_headers = True
    monkeypatch.setenv("MINIFCN_DOWNLOAD_DEADLINE", "1.5")
    started = time.monotonic()
    with pytest.raises(DeadlineError, match=r"weights\.bin: the download deadline of 1\.5 s"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert time.monotonic() - started < 6  # the server drips for 5 s, then hangs up
    assert_nothing_final(tmp_path, "weights.bin")


def test_https_checks_certificates_and_keeps_the_deadline(server, tmp_path, monkeypatch):
    # The same server behind TLS, with a certificate made for the test by openssl.
    import shutil
    import ssl
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    base = server.base.replace("http://", "https://")
    server.files["weights.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(entry_for(PAYLOAD), tmp_path / "a", base_url=base, retries=0, **OPTIONS)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted
    assert fetch(entry_for(PAYLOAD), tmp_path / "b", base_url=base, **OPTIONS).exists()
    server.drip = 1.0
    with pytest.raises(DeadlineError, match="deadline of 1.5 s"):
        fetch(entry_for(PAYLOAD), tmp_path / "c", base_url=base, deadline=1.5, **OPTIONS)


def test_deadline_from_the_environment_is_checked(monkeypatch, tmp_path):
    from minifcn.errors import UsageError
    monkeypatch.setenv("MINIFCN_DOWNLOAD_DEADLINE", "-5")
    with pytest.raises(UsageError, match="MINIFCN_DOWNLOAD_DEADLINE: -5 is out of range"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url="http://127.0.0.1:9", **OPTIONS)


def test_stall_is_dropped_and_resumed(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.stalls_left = 1
    options = {**OPTIONS, "stall_timeout": 0.5}
    assert fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **options).read_bytes() \
        == PAYLOAD
    assert server.requests == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_stall_reported_after_the_last_retry(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.stalls_left = 1
    options = {**OPTIONS, "stall_timeout": 0.5}
    with pytest.raises(DownloadError, match=r"weights\.bin: nothing received for 0\.5 s .*--stall-timeout"
                                            ".*51200 bytes kept in weights.bin.part"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, retries=0, **options)
    assert_nothing_final(tmp_path, "weights.bin")


def test_ctrl_c_leaves_nothing_final_and_resumes(server, tmp_path):
    server.files["weights.bin"] = PAYLOAD
    server.interrupt_after = 40_000
    with pytest.raises(KeyboardInterrupt):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)
    assert_nothing_final(tmp_path, "weights.bin")
    server.interrupt_after = 0
    assert fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS).read_bytes() \
        == PAYLOAD
    assert server.requests[-1].startswith("bytes=")  # the second call went on from the .part


# --- registry, cache, conversion, command line -----------------------------------------------

def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(entry_for(PAYLOAD), tmp_path, base_url=server.base, **OPTIONS)


def test_registry_entries_can_all_be_verified():
    for entry in REGISTRY.values():
        assert entry.checksum is not None or (entry.format and entry.kind), entry.name


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
    data = fcn8s_bytes(tmp_path)
    server.files["fcn8s.safetensors"] = data
    fetched = download(FCN8S, tmp_path / "cache", base_url=server.base, **OPTIONS)
    assert fetched.npz == tmp_path / "cache" / "fcn8s.npz"
    meta = load_npz(fetched.npz)[1]
    assert meta["kind"] == "fcn8s" and meta["source"]["file"] == "fcn8s.safetensors"
    raw_only = download(entry_for(data, "fcn8s.safetensors"), tmp_path / "raw", convert=False,
                        base_url=server.base, **OPTIONS)
    assert raw_only.npz is None and not (tmp_path / "raw" / "fcn8s.npz").exists()


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIFCN_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MINIFCN_HOME")
    assert cache_dir() == tmp_path / "b" / "minifcn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(cache_dir()).endswith(".cache/minifcn")


def test_cli_download(server, tmp_path, monkeypatch, capsys):
    server.files["weights.bin"] = PAYLOAD
    monkeypatch.setitem(REGISTRY, "test-weights", entry_for(PAYLOAD))
    argv = ["download", "test-weights", "--dest", str(tmp_path), "--no-convert",
            "--base-url", server.base, "--quiet", "--stall-timeout", "5"]
    assert main(argv) == 0
    assert (tmp_path / "weights.bin").read_bytes() == PAYLOAD
    assert "downloaded" in capsys.readouterr().out
    server.files["weights.bin"] = b"x" * len(PAYLOAD)
    (tmp_path / "weights.bin").unlink()
    assert main(argv) == 1  # printed by the command line's one error handler
    err = capsys.readouterr().err
    assert err.startswith("minifcn download: error: weights.bin: sha256 is") and err.count("\n") == 1
    for option in ("--deadline", "--stall-timeout"):
        with pytest.raises(SystemExit) as exit_info:
            main(["download", "test-weights", option, "0"])
        assert exit_info.value.code == 2
        assert f"argument {option}: 0 is out of range" in capsys.readouterr().err
