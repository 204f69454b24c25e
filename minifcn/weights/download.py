"""Download the known VGG16 / FCN weight files, verify them, and convert them to ``.npz``.

Files land in the cache folder (``MINIFCN_HOME``, else ``$XDG_CACHE_HOME/minifcn``, else
``~/.cache/minifcn``). A download is written to ``NAME.part`` first and gets its final name
only once verified:

* a file with a published checksum must have that size and checksum;
* a file without one is read whole, as the format and the network its registry entry
  names (every layer present with its shape, the expected number of classes), with the
  same readers as ``minifcn convert``.

A file that fails is deleted; a web page sent in its place is refused before anything is
written. How an interrupted download resumes, and when a ``.part`` is discarded instead, is
in :mod:`.transfer`.

Time: the whole fetch (every attempt and pause) has a deadline, by default the file's size
at 100 kB/s and at least 5 minutes (``deadline=``, ``--deadline`` or the environment
variable ``MINIFCN_DOWNLOAD_DEADLINE``, in seconds, set another); a connection silent for
``stall_timeout`` seconds (default 60) is dropped and the download resumed.

``MINIFCN_DOWNLOAD_BASE`` (or ``base_url=``) replaces the folder part of every URL, for a
mirror or a local test server.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..cliargs import positive
from ..errors import UsageError
from .transfer import (DEADLINE_ENV, STALL_TIMEOUT, ChecksumError, Clock, DeadlineError,
                       DownloadError, Interrupted, Target, WrongContentError, discard, kept_note,
                       record_path, transfer)

__all__ = ["REGISTRY", "ChecksumError", "DeadlineError", "DownloadError", "Fetched",
           "RemoteFile", "WrongContentError", "cache_dir", "download", "fetch", "local_paths", "lookup",
           "verify"]

BASE_ENV, HOME_ENV = "MINIFCN_DOWNLOAD_BASE", "MINIFCN_HOME"
PASCAL_CLASSES = 21


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


def local_paths(name, dest=None) -> Fetched:
    """Where :func:`fetch` leaves a registry file in ``dest`` (default :func:`cache_dir`) and
    where :func:`download` writes its conversion: ``(path, npz)``, nothing checked."""
    entry = lookup(name)
    path = (Path(dest) if dest is not None else cache_dir()) / entry.filename
    return Fetched(path, path.with_suffix(".npz"))


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
    """Read the whole file as ``convert`` does (every array, every shape and value checked),
    without writing anything."""
    from .convert import detect_format, read_checked  # noqa: PLC0415 - keeps imports light
    found = detect_format(path)
    if found != entry.format:
        raise WrongContentError(f"{entry.filename}: its bytes are {found or 'no known weight'} "
                                f"format, expected a {entry.format} file")
    try:
        checked = read_checked(path, format=entry.format, width=entry.width)
    except ValueError as exc:  # the readers' WeightFileError is a ValueError
        raise WrongContentError(f"{entry.filename}: does not read as {entry.kind} weights "
                                f"({exc})") from None
    if checked.kind != entry.kind:
        raise WrongContentError(f"{entry.filename}: holds {checked.kind} weights, "
                                f"expected {entry.kind}")
    if entry.classes is not None and checked.num_classes != entry.classes:
        raise WrongContentError(f"{entry.filename}: has {checked.num_classes} classes, "
                                f"expected {entry.classes}")


def deadline_from_env():
    """``$MINIFCN_DOWNLOAD_DEADLINE`` in seconds, or None when unset."""
    text = os.environ.get(DEADLINE_ENV, "").strip()
    if not text:
        return None
    try:
        return positive(float)(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{DEADLINE_ENV}: {exc} (seconds)") from None


def _gave_up(url, part: Path, exc, stall) -> str:
    reason = getattr(exc, "reason", exc)  # a URLError wraps the socket's error
    if isinstance(reason, TimeoutError):
        what = (f"nothing received for {stall:g} s (the server stalled or cannot be "
                "reached); try again later, or allow longer pauses with --stall-timeout SECONDS")
    else:
        what = f"download interrupted ({exc})"
    return f"{url}: {what}" + kept_note(part)


def fetch(name, dest=None, base_url=None, progress=True, retries=3, deadline=None,
          stall_timeout=STALL_TIMEOUT, backoff=1.0) -> Path:
    """Download one registry file into ``dest`` (resuming a ``.part``) and verify it.

    Parameters
    ----------
    name : str or RemoteFile
    dest : path or None
        Folder; default :func:`cache_dir`.
    base_url : str or None
        Replaces the URL's folder (default ``$MINIFCN_DOWNLOAD_BASE``, else the real URL).
    retries : int
        Extra attempts after a lost or stalled connection, each resuming where the last
        stopped when the server allows it.
    deadline : float or None
        Seconds for the whole fetch; default ``$MINIFCN_DOWNLOAD_DEADLINE``, else the size
        at 100 kB/s and at least 300 s (:func:`.transfer.default_deadline`).
    stall_timeout : float
        Seconds without a byte before a connection is dropped.
    backoff : float
        Seconds before the first retry (doubling after each).

    Returns
    -------
    Path
        The verified file. On any failure, Ctrl-C included, nothing is under its name.
    """
    entry = lookup(name)
    if entry.checksum is None and (entry.format is None or entry.kind is None):
        raise ValueError(f"{entry.name}: neither a checksum nor a format and kind to verify "
                         "the download by")
    final = local_paths(entry, dest).path
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(entry.filename + ".part")
    if final.exists():
        try:
            verify(final, entry)
            return final
        except (ChecksumError, WrongContentError):
            final.unlink()  # stale or damaged: fetch it again
    base = base_url or os.environ.get(BASE_ENV)
    url = base.rstrip("/") + "/" + entry.filename if base else entry.url
    deadline = deadline if deadline is not None else deadline_from_env()
    clock = Clock(Target(url, part, entry.filename, entry.size), deadline, stall_timeout)
    for attempt in range(retries + 1):
        try:
            transfer(clock.target, clock, progress)
            break
        except ChecksumError:
            discard(part)
            raise
        except (Interrupted, OSError, http.client.HTTPException) as exc:
            clock.check()  # the watchdog ends a connection at the deadline: say so
            if attempt == retries:
                raise DownloadError(_gave_up(url, part, exc, stall_timeout)) from None
            clock.sleep(backoff * 2 ** attempt)
    try:
        verify(part, entry)
    except (ChecksumError, WrongContentError) as exc:
        discard(part)
        raise type(exc)(f"{exc}; the download from {url} was deleted") from None
    os.replace(part, final)
    record_path(part).unlink(missing_ok=True)
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
    npz = local_paths(name, path.parent).npz
    if not npz.exists():
        convert_file(path, npz)
    return Fetched(path, npz)
