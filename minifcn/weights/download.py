"""Download the known VGG16 / FCN weight files, verify them, and convert them to ``.npz``.

Files land in the cache folder (``MINIFCN_HOME``, else ``$XDG_CACHE_HOME/minifcn``, else
``~/.cache/minifcn``). A download is written to ``NAME.part`` first. When it is cut off, the
next attempt asks the server for the rest with an HTTP ``Range: bytes=N-`` header; a server
that answers ``206 Partial Content`` continues from byte N, one that answers ``200`` sends
the whole file and the download restarts cleanly. The file gets its final name only once
verified:

* a file with a published checksum must have that size and checksum;
* a file without one is read whole, as the format and the network its registry entry
  names (every layer present with its shape, the expected number of classes), with the
  same readers as ``minifcn convert``.

A file that fails is deleted.

``MINIFCN_DOWNLOAD_BASE`` (or ``base_url=``) replaces the folder part of every URL, for a
mirror or a local test server.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from ..errors import MinifcnError

BASE_ENV, HOME_ENV = "MINIFCN_DOWNLOAD_BASE", "MINIFCN_HOME"
CHUNK = 1 << 16
PASCAL_CLASSES = 21


class DownloadError(MinifcnError, RuntimeError):
    """A download failed (HTTP error, connection lost too often); the message says which."""


class ChecksumError(DownloadError):
    """The downloaded file has the wrong size or checksum; it has been deleted."""


class WrongContentError(DownloadError):
    """The server sent something else than the weight file: bytes that do not read as the
    expected weights."""


@dataclass(frozen=True)
class RemoteFile:
    """A weight file the project knows: where it is and how to recognise it.

    ``size`` and ``checksum`` may be ``None`` where no trustworthy value is published.
    ``checksum`` is ``(algorithm, hex digest)``; a shorter hex string is a prefix, as in
    torchvision's file names. Without a checksum the file is verified by reading it whole:
    ``format`` (one of :data:`~minifcn.weights.convert.FORMATS`), ``kind`` (one of
    :data:`~minifcn.weights.layout.KINDS`), ``classes`` (None: any) and ``width`` (channel
    width, 1.0 = the real VGG16) say what it must hold.
    """
    name: str
    filename: str
    url: str
    size: int | None = None
    checksum: tuple | None = None
    note: str = ""
    format: str | None = None
    kind: str | None = None
    classes: int | None = None
    width: float = 1.0


_BERKELEY = "http://dl.caffe.berkeleyvision.org/"
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
_UNPUBLISHED = "; no published checksum: verified by reading it whole"
REGISTRY = {f.name: f for f in (
    RemoteFile("vgg16-torchvision", "vgg16-397923af.pth",
               "https://download.pytorch.org/models/vgg16-397923af.pth", 553_433_881,
               ("sha256", "397923af"), "torchvision VGG16, legacy torch format; RGB 0-1 input",
               format="torch", kind="vgg16", classes=1000),
    RemoteFile("vgg16-keras", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
               _KERAS + "vgg16_weights_tf_dim_ordering_tf_kernels.h5", 553_467_096,
               ("md5", "64373286793e3c8b2b4e3219cbf3544b"), "Keras VGG16; BGR 0-255 input",
               format="keras", kind="vgg16", classes=1000),
    RemoteFile("vgg16-keras-notop", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               _KERAS + "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", 58_889_256,
               ("md5", "6d6bbae143d832006294945121d1f1fc"), "Keras VGG16 backbone only",
               format="keras", kind="vgg16-notop"),
    RemoteFile("vgg16-caffe", "VGG_ILSVRC_16_layers.caffemodel",
               "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
               "VGG_ILSVRC_16_layers.caffemodel", 553_432_081, None,
               "the VGG team's Caffe VGG16 (FCN's starting point)" + _UNPUBLISHED,
               format="caffe", kind="vgg16", classes=1000),
    RemoteFile("fcn32s-heavy-pascal", "fcn32s-heavy-pascal.caffemodel",
               _BERKELEY + "fcn32s-heavy-pascal.caffemodel", None, None,
               "FCN-32s on PASCAL VOC" + _UNPUBLISHED,
               format="caffe", kind="fcn32s", classes=PASCAL_CLASSES),
    RemoteFile("fcn16s-heavy-pascal", "fcn16s-heavy-pascal.caffemodel",
               _BERKELEY + "fcn16s-heavy-pascal.caffemodel", None, None,
               "FCN-16s on PASCAL VOC" + _UNPUBLISHED,
               format="caffe", kind="fcn16s", classes=PASCAL_CLASSES),
    RemoteFile("fcn8s-heavy-pascal", "fcn8s-heavy-pascal.caffemodel",
               _BERKELEY + "fcn8s-heavy-pascal.caffemodel", None,
               ("sha1", "c449ea74dd7d83751d1357d6a8c323fcf4038962"), "FCN-8s on PASCAL VOC",
               format="caffe", kind="fcn8s", classes=PASCAL_CLASSES),
    RemoteFile("fcn8s-atonce-pascal", "fcn8s-atonce-pascal.caffemodel",
               _BERKELEY + "fcn8s-atonce-pascal.caffemodel", None, None,
               "FCN-8s trained at once on PASCAL VOC" + _UNPUBLISHED,
               format="caffe", kind="fcn8s-atonce", classes=PASCAL_CLASSES),
)}


class Fetched(NamedTuple):
    path: Path         # the verified download
    npz: Path | None   # the converted weights beside it (None with convert=False)


def cache_dir() -> Path:
    """``$MINIFCN_HOME``, else ``$XDG_CACHE_HOME/minifcn``, else ``~/.cache/minifcn``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "minifcn"


def lookup(name) -> RemoteFile:
    """A registry entry by short name or file name (a :class:`RemoteFile` passes through)."""
    if isinstance(name, RemoteFile):
        return name
    if name in REGISTRY:
        return REGISTRY[name]
    for entry in REGISTRY.values():
        if name in (entry.name, entry.filename):
            return entry
    raise KeyError(f"unknown weight file {name!r}; known: {', '.join(REGISTRY)}")


def verify(path, entry: RemoteFile) -> None:
    """Check ``path`` against ``entry``: its size, then its checksum or else its contents.

    Raises
    ------
    ChecksumError
        Wrong size or checksum.
    WrongContentError
        No checksum, and the file does not read whole as the entry's format and network.
    """
    path = Path(path)
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise ChecksumError(f"{entry.filename}: {size} bytes, expected {entry.size}")
    if entry.checksum is None:
        _verify_contents(path, entry)
        return
    algorithm, expected = entry.checksum
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(expected.lower()):
        raise ChecksumError(f"{entry.filename}: {algorithm} is {digest.hexdigest()}, "
                            f"expected {expected}{'...' if len(expected) < 32 else ''}")


def _verify_contents(path: Path, entry: RemoteFile):
    """Read the whole file as ``convert`` would (every array, every shape checked)."""
    from .convert import convert, detect_format  # noqa: PLC0415 - keeps imports light
    found = detect_format(path)
    if found != entry.format:
        raise WrongContentError(f"{entry.filename}: its bytes are {found or 'no known weight'} "
                                f"format, expected a {entry.format} file")
    # Converting is the complete check; the .npz it writes is thrown away (download()
    # converts the file again under its final name, which the .npz records).
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        try:
            meta = convert(path, Path(tmp) / "check.npz", format=entry.format, width=entry.width)
        except ValueError as exc:  # the readers' WeightFileError is a ValueError
            raise WrongContentError(f"{entry.filename}: does not read as {entry.kind} weights "
                                    f"({exc})") from None
    if meta["kind"] != entry.kind:
        raise WrongContentError(f"{entry.filename}: holds {meta['kind']} weights, "
                                f"expected {entry.kind}")
    if entry.classes is not None and meta["num_classes"] != entry.classes:
        raise WrongContentError(f"{entry.filename}: has {meta['num_classes']} classes, "
                                f"expected {entry.classes}")


class _Interrupted(Exception):
    """The connection ended before the whole file arrived (worth resuming)."""


def _fetch_once(url, part: Path, entry: RemoteFile, progress, timeout):
    """One HTTP request that appends to (206) or rewrites (200) ``part``."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "minifcn", **({"Range": f"bytes={start}-"} if start else {})}
    try:
        # A fresh opener reads the proxy settings of the environment as it is now.
        opener = urllib.request.build_opener()
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing left after byte `start`: let verify() judge
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with resp:
        content_range = re.match(r"bytes (\d+)-\d+/(\d+)", resp.headers.get("Content-Range", ""))
        if resp.status == 206:
            if not (start and content_range and int(content_range[1]) == start):
                part.unlink(missing_ok=True)  # not the bytes we asked for: start over
                raise _Interrupted("the server sent an unexpected byte range")
            mode, total = "ab", int(content_range[2])
        else:  # the server ignored the Range header (200): start over from byte 0
            start, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length is not None else None
        if total is not None and entry.size is not None and total != entry.size:
            raise ChecksumError(f"{entry.filename}: the server offers {total} bytes, "
                                f"expected {entry.size}")
        with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=entry.filename,
                                         disable=not progress) as bar:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                f.write(chunk)
                bar.update(len(chunk))
    got = part.stat().st_size
    if total is not None and got < total:  # http.client returns b"" on an early close
        raise _Interrupted(f"connection closed after {got} of {total} bytes")


def fetch(name, dest=None, base_url=None, progress=True, retries=3, timeout=60.0,
          backoff=1.0) -> Path:
    """Download one registry file into ``dest`` (resuming a ``.part``) and verify it.

    Parameters
    ----------
    name : str or RemoteFile
    dest : path or None
        Folder; default :func:`cache_dir`.
    base_url : str or None
        Replaces the URL's folder (default ``$MINIFCN_DOWNLOAD_BASE``, else the real URL).
    retries : int
        Extra attempts, each resuming where the last one stopped.
    backoff : float
        Seconds before the first retry (doubling after each).

    Returns
    -------
    Path
        The verified file; on a failure nothing is under its name.
    """
    entry = lookup(name)
    if entry.checksum is None and (entry.format is None or entry.kind is None):
        raise ValueError(f"{entry.name}: neither a checksum nor a format and kind to verify "
                         "the download by")
    dest = Path(dest) if dest is not None else cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    final, part = dest / entry.filename, dest / (entry.filename + ".part")
    if final.exists():
        try:
            verify(final, entry)
            return final
        except (ChecksumError, WrongContentError):
            final.unlink()  # stale or damaged: fetch it again
    base = base_url or os.environ.get(BASE_ENV)
    url = base.rstrip("/") + "/" + entry.filename if base else entry.url
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, entry, progress, timeout)
            break
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
        except (_Interrupted, OSError, http.client.HTTPException) as exc:
            if attempt == retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"{url}: download interrupted ({exc}); {have} bytes kept in {part.name}, "
                    "run the same command again to resume") from None
            time.sleep(backoff * 2 ** attempt)
    try:
        verify(part, entry)
    except (ChecksumError, WrongContentError) as exc:
        part.unlink(missing_ok=True)
        raise type(exc)(f"{exc}; the download from {url} was deleted") from None
    os.replace(part, final)
    return final


def download(name, dest=None, convert=True, **fetch_options) -> Fetched:
    """:func:`fetch` a registry file, then convert it to ``.npz`` beside it.

    Returns
    -------
    Fetched
        ``(path, npz)``; ``npz`` is None when ``convert`` is False.
    """
    path = fetch(name, dest, **fetch_options)
    if not convert:
        return Fetched(path, None)
    from .convert import convert as convert_file  # noqa: PLC0415 - keeps imports light
    npz = path.with_suffix(".npz")
    if not npz.exists():
        convert_file(path, npz)
    return Fetched(path, npz)
