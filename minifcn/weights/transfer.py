"""One HTTP download into a ``.part`` file: bounded in time, never a web page, never spliced blindly.

:mod:`.download` calls :func:`transfer` once per attempt. A socket timeout alone leaves
three holes, and each has its guard here:

* **Time.** A server that sends a byte every few seconds never trips a per-read timeout
  and can hold the command for weeks, in the body or already in the headers. A
  :class:`Clock` gives the whole fetch (every attempt and pause) a deadline; a
  :class:`~.watchdog.Watchdog` ends the connection when it passes, wherever a read is
  blocked, and the deadline is checked again after every block received. A connection
  silent for the *stall timeout* is dropped by the socket timeout and retried.
* **Web pages.** A login wall, a "file moved" notice or a captive portal arrives with
  status 200 as readily as the file. A ``Content-Type`` of ``text/html`` (or XHTML) is
  refused, and so is a body that starts like markup (``<!DOCTYPE``, ``<html`` ...); both
  are looked at before anything is written.
* **Stale ``.part`` files.** When a download starts, the server's validators (a strong
  ``ETag``, ``Last-Modified``) and the total length are recorded beside the ``.part`` in
  ``NAME.part.json``. A later attempt resumes only with an ``If-Range`` request, and only
  when the answer is ``206`` with exactly the byte range asked for and the same
  validators. A ``.part`` without a usable record, or any other answer, is discarded and
  the download starts again from byte 0.

The finished ``.part`` is not trusted either way: :func:`.download.verify` checks it before
it gets its final name.
"""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import MinifcnError
from ..npzio import atomic_write
from .watchdog import Watchdog

DEADLINE_ENV = "MINIFCN_DOWNLOAD_DEADLINE"
CHUNK = 1 << 16
MIN_RATE = 100_000           # bytes/s: the slowest link the default deadline allows for
MIN_DEADLINE = 300.0         # s: the default deadline is never shorter (small files, slow starts)
STALL_TIMEOUT = 60.0         # s without a single byte before a connection is dropped
MAX_UNKNOWN_SIZE = 2 << 30   # bytes: the most a file without a published size may be
SNIFF = 256                  # bytes looked at for markup before the first write
MARKUP = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<!--")
WEB_PAGE_TYPES = ("text/html", "application/xhtml+xml")


class DownloadError(MinifcnError, RuntimeError):
    """A download failed (HTTP error, connection lost too often); the message says which."""


class ChecksumError(DownloadError):
    """The downloaded file has the wrong size or checksum; it has been deleted."""


class WrongContentError(DownloadError):
    """The server sent something else than the weight file: a web page, or bytes that do not
    read as the expected weights."""


class DeadlineError(DownloadError):
    """The download did not finish within its deadline."""


class Interrupted(Exception):
    """The attempt ended early but the download may go on (resumed or started over)."""


def default_deadline(size) -> float:
    """Seconds allowed to download ``size`` bytes: at :data:`MIN_RATE`, and at least
    :data:`MIN_DEADLINE`. ``None`` (size unknown) allows for :data:`MAX_UNKNOWN_SIZE`."""
    return max(MIN_DEADLINE, (MAX_UNKNOWN_SIZE if size is None else size) / MIN_RATE)


@dataclass(frozen=True)
class Target:
    """One file to download: from ``url`` into ``part``; ``name`` and ``size`` (None:
    unpublished) are the final file's."""
    url: str
    part: Path
    name: str
    size: int | None = None


def record_path(part: Path) -> Path:
    """Where the validators of ``part`` are recorded: ``NAME.part.json`` beside it."""
    return part.with_name(part.name + ".json")


def discard(part: Path) -> None:
    """Delete a ``.part`` and its record."""
    part.unlink(missing_ok=True)
    record_path(part).unlink(missing_ok=True)


def kept_note(part: Path) -> str:
    """The end of a failure message: what is left of the download, and what to do."""
    if part.exists() and record_path(part).exists():
        return (f"; {part.stat().st_size} bytes kept in {part.name}, run the same command "
                "again to resume")
    return "; run the same command again to start over"


class Clock:
    """The time one fetch may take: a deadline over all its attempts, and a stall timeout.

    ``deadline=None`` means :func:`default_deadline` of the published size; when there is
    none, of the size the server first announces (once: a later answer cannot extend it).
    """

    def __init__(self, target: Target, deadline, stall):
        self.target, self.stall = target, stall
        self.started = time.monotonic()
        self.settled = deadline is not None or target.size is not None
        self.limit = float(deadline) if deadline is not None else default_deadline(target.size)

    def expect(self, size):
        """The server announced ``size`` bytes (None: it did not)."""
        if not self.settled and size is not None:
            self.limit, self.settled = default_deadline(size), True

    def remaining(self) -> float:
        return self.limit - (time.monotonic() - self.started)

    def check(self, got=None, total=None):
        """Raise :class:`DeadlineError` once the deadline has passed."""
        if self.remaining() > 0:
            return
        have = "" if got is None else f" with {got} of {total or 'an unknown number of'} bytes"
        raise DeadlineError(
            f"{self.target.url}: the download deadline of {self.limit:g} s passed{have}; on a "
            f"slow link allow more time with --deadline SECONDS or {DEADLINE_ENV}=SECONDS"
            + kept_note(self.target.part))

    def sleep(self, seconds):
        """Pause between attempts, never past the deadline."""
        time.sleep(max(0.0, min(seconds, self.remaining())))
        self.check()


def _number(text):
    """A header's non-negative integer, or None (headers are the server's word, not ours)."""
    return int(text) if text is not None and re.fullmatch(r"\d{1,19}", text.strip()) else None


def _validators(headers) -> dict:
    """The response's validators usable in ``If-Range``: a strong ETag, Last-Modified."""
    etag = headers.get("ETag")
    return {"etag": None if etag is None or etag.startswith("W/") else etag,
            "last_modified": headers.get("Last-Modified")}


def _resumable(part: Path, url):
    """``(bytes to resume from, record)``, or ``(0, None)`` after discarding a ``.part`` whose
    record is missing, unreadable, for another URL, without validators, or shorter than it."""
    try:
        record = json.loads(record_path(part).read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        record, size = None, 0
    if not _usable(record, url, size):
        discard(part)
        return 0, None
    return size, record


def _usable(record, url, size) -> bool:
    """Whether a record read back from disk (checked like any input) allows resuming."""
    if not isinstance(record, dict) or record.get("url") != url:
        return False
    length, validators = record.get("length"), [record.get("etag"), record.get("last_modified")]
    return (type(length) is int and 0 < size <= length and any(validators)
            and all(v is None or isinstance(v, str) for v in validators))


def _refuse_web_page(target: Target, content_type, head=b""):
    what = None
    if content_type in WEB_PAGE_TYPES:
        what = f"Content-Type {content_type}"
    elif head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(MARKUP):
        what = f"it starts with {head.lstrip()[:15]!r}"
    if what:
        raise WrongContentError(
            f"{target.url}: got a web page ({what}), not the file {target.name}; the link may "
            "have moved or need a login: open it in a browser, or use a mirror (--base-url)")


def _continues(resp, start, record) -> bool:
    """Whether a 206 answer is exactly the rest of the recorded file."""
    found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", resp.headers.get("Content-Range", "").strip())
    same = all(resp.headers.get(header) == record[key]
               for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified"))
               if record.get(key))
    return bool(start and found and same and int(found[1]) == start
                and int(found[3]) == record["length"] and int(found[2]) == record["length"] - 1)


def transfer(target: Target, clock: Clock, progress=True):
    """One GET of ``target.url`` into ``target.part``: the rest (206) or all of it (200).

    Raises
    ------
    Interrupted
        The connection ended early, or the ``.part`` could not be resumed (then it was
        discarded); another attempt may go on.
    DeadlineError, WrongContentError, ChecksumError, DownloadError
        Final: no further attempt helps.
    """
    part = target.part
    start, record = _resumable(part, target.url)
    if record is not None and start == record["length"]:
        return  # complete (an earlier run stopped before verifying it): verify() judges it
    headers = {"User-Agent": "minifcn"}
    if start:  # If-Range: the server sends the rest only if the file is still the same
        headers.update({"Range": f"bytes={start}-",
                        "If-Range": record.get("etag") or record["last_modified"]})
    # The watchdog ends the connection at the deadline, wherever a read is blocked.
    with Watchdog(clock.remaining()) as watchdog:
        request = urllib.request.Request(target.url, headers=headers)
        try:
            resp = watchdog.opener().open(request, timeout=clock.stall)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and start:  # nothing after the .part's end: not the same file
                discard(part)
                raise Interrupted("the server has nothing after the .part's end; starting "
                                  "over") from None
            raise DownloadError(f"{target.url}: HTTP {exc.code} {exc.reason}") from None
        with resp:
            clock.check()
            content_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            _refuse_web_page(target, content_type)
            if resp.status == 206:
                if not _continues(resp, start, record):
                    discard(part)
                    raise Interrupted("the server's partial answer does not continue the "
                                      ".part (another range or another version); starting over")
                clock.expect(record["length"])
                _receive(resp, target, clock, start, record["length"], progress)
            else:  # 200: the whole file, whether or not a range was asked for
                total = _number(resp.headers.get("Content-Length"))
                head = _start_afresh(resp, target, clock, total)
                _receive(resp, target, clock, 0, total, progress, head)


def _start_afresh(resp, target: Target, clock: Clock, total) -> bytes:
    """Check the size offered and the first bytes, then replace the ``.part`` by an empty one
    with the new record. Returns the first bytes, still to be written."""
    if total is not None and target.size is not None and total != target.size:
        raise ChecksumError(f"{target.name}: the server offers {total} bytes, "
                            f"expected {target.size}")
    if total is not None and target.size is None and total > MAX_UNKNOWN_SIZE:
        raise ChecksumError(f"{target.name}: the server offers {total} bytes, more than the "
                            f"{MAX_UNKNOWN_SIZE} allowed for a file without a published size")
    clock.expect(total)
    head = b""
    while len(head) < SNIFF and (chunk := resp.read1(SNIFF - len(head))):
        head += chunk
        clock.check(len(head), total)
    _refuse_web_page(target, None, head)
    discard(target.part)
    target.part.touch()  # the .part exists before its record: a crash in between discards it
    record = {"url": target.url, "length": total, **_validators(resp.headers)}
    if total is not None and (record["etag"] or record["last_modified"]):  # else no resuming
        atomic_write(record_path(target.part),
                     lambda tmp: Path(tmp).write_text(json.dumps(record)))
    return head


def _receive(resp, target: Target, clock: Clock, start, total, progress, head=b""):
    """Append the body to the ``.part``, which holds ``start`` bytes already."""
    limit = target.size if target.size is not None else MAX_UNKNOWN_SIZE
    got = start
    with open(target.part, "ab") as f, tqdm(total=total, initial=start, unit="B",
                                            unit_scale=True, unit_divisor=1024,
                                            desc=target.name, disable=not progress) as bar:
        chunk = head or resp.read1(CHUNK)
        while chunk:
            if got + len(chunk) > limit:
                raise ChecksumError(f"{target.name}: the server sends more than {limit} bytes")
            f.write(chunk)
            f.flush()  # what a failure message reports as kept is on disk
            got += len(chunk)
            bar.update(len(chunk))
            clock.check(got, total)
            chunk = resp.read1(CHUNK)  # returns what has arrived: the clock is checked often
    clock.check(got, total)  # the watchdog may have ended the connection
    if total is not None and got < total:  # http.client returns b"" on an early close
        raise Interrupted(f"connection closed after {got} of {total} bytes")
