"""The errors a user can fix, and how the command line shows them.

Every error the package raises for bad input (a file that is not what it claims to be, an
option out of range, an image too small for the network) derives from :class:`MinifcnError`.
Its message is one sentence that names the thing (file, key, layer, option) and, where it
applies, what was expected and what was found, so the command line can print it as it is:
one line on stderr and a non-zero exit status. Any other exception is a bug, and the command
line shows its traceback.
"""
from __future__ import annotations


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's text on one line (its type's name when it has none), cut at ``limit``
    characters: another library's message may span lines or quote a whole corrupt header."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if limit is None or len(text) <= limit else text[:limit] + "..."


class MinifcnError(Exception):
    """Base of every error caused by the user's input rather than by a bug in minifcn."""


class FileFormatError(MinifcnError, ValueError):
    """A file cannot be read as what it should be (truncated, corrupt, hostile, wrong kind).

    The message always names the file. A ``ValueError`` too, so that callers that caught
    ``ValueError`` keep working.
    """


class WeightFileError(FileFormatError):
    """A weight file could not be read or does not hold what it should.

    The message always names the file, and where it applies the key and the expected and
    found shapes, so it can be shown to the user as it is (no traceback needed).
    """


class UsageError(MinifcnError, ValueError):
    """An option or argument out of its range; the message names the option."""


class WorkerFailed(RuntimeError):
    """A worker process that shared a training batch died or failed during a step.

    Not the user's doing, but not a traceback's either: the message names the process, how it
    ended (a signal, an exit code, or its own traceback), and the run's checkpoint and the
    command that resumes it. The command line prints it as it is.
    """
