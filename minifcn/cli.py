"""The ``minifcn`` command: one entry point, one subcommand per job.

Every subcommand takes ``--device cpu|gpu`` (default: ``$MINIFCN_DEVICE``, else cpu).

Errors, from this one place (:func:`main`): an error a user can fix (a bad or missing file, an
option out of range, no GPU: :class:`~minifcn.errors.MinifcnError`, ``ValueError``,
``OSError``) is printed as one line naming the thing and gives exit status 1; a bad option
caught by the parser gives status 2, also in one line (:class:`OneLineParser`); running out
of memory (an image, batch or width too large for this machine) is one line and status 1;
Ctrl-C gives 130 (training saves first, and handles SIGTERM the same way, status 143); a
training worker process that dies or fails is reported as it is, with the saved run's
``--resume`` command, status 1.
Nothing is left half-written. Any other exception is a bug and keeps its traceback;
``--debug`` shows the traceback of user errors too.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from .backend import resolve_device
from .engine.memory import keep_freed_memory
from .errors import MinifcnError, WorkerFailed, one_line


def _cmd_gradcheck(args):
    from .gradcheck_report import format_table, run_gradcheck

    if args.device == "gpu":  # central differences in float64 are a CPU job
        print("minifcn gradcheck: runs on the CPU in float64 whatever the device; the CuPy "
              "paths are checked against NumPy by tests/test_cupy.py", file=sys.stderr)
    op_sets = ("book", "engine") if args.ops == "both" else (args.ops,)
    extra = []
    if args.models:
        from .models.gradcheck_cases import model_cases

        extra = model_cases(op_sets)
    rows = run_gradcheck(extra, op_sets)
    print(format_table(rows))
    return 0 if all(r[3] for r in rows) else 1


def _add_gradcheck(sub):
    p = sub.add_parser(
        "gradcheck", help="check every layer's backward against numerical gradients",
        description="Run every op's forward and backward on small random float64 arrays and "
                    "compare each gradient with central differences. Exits non-zero if any "
                    "relative error reaches 1e-7.")
    p.add_argument("--no-models", dest="models", action="store_false",
                   help="skip the whole-network rows (narrow FCN-32s/16s/8s)")
    p.add_argument("--ops", choices=["book", "engine", "both"], default="both",
                   help="check the book's ops (minifcn.ops), the engine's (minifcn.engine) or "
                        "both (default)")
    p.set_defaults(func=_cmd_gradcheck)


def _optional_parsers():
    """Subcommands whose modules may be absent in a partial install stay out of the way."""
    hooks = []
    for module, names in [  # in the order --help lists them: the main job first
        ("minifcn.train.cli", ["add_demo_parser", "add_train_parser", "add_evaluate_parser",
                               "add_predict_parser"]),
        ("minifcn.cli", ["_add_gradcheck"]),
        ("minifcn.models.describe", ["add_describe_parser"]),
        ("minifcn.weights.cli", ["add_convert_parser", "add_download_parser"]),
        ("minifcn.figures", ["add_figures_parser"]),
    ]:
        try:
            mod = __import__(module, fromlist=names)
        except ImportError:
            continue
        hooks.extend(getattr(mod, n) for n in names if hasattr(mod, n))
    return hooks


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, as every other error of the
    command: ``minifcn describe: error: argument --pad: ...``, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = OneLineParser(
        prog="minifcn",
        description="FCN semantic segmentation written by hand in NumPy/CuPy.")
    parser.add_argument("--device", default=None, choices=["cpu", "gpu"],
                        help="where arrays live (default: $MINIFCN_DEVICE, else cpu)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error too (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _optional_parsers():
        add(sub)
    for p in sub.choices.values():  # --device is accepted after the subcommand too
        if not any("--device" in a.option_strings for a in p._actions):
            p.add_argument("--device", default=argparse.SUPPRESS, choices=["cpu", "gpu"],
                           help="where arrays live (default: $MINIFCN_DEVICE, else cpu)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error too (for bug reports)")
    parser.commands = sub.choices  # main() lets a command's own parser report its errors
    return parser


def user_error_message(exc: BaseException) -> str:
    """One line for an error the user can fix; an ``OSError`` names its file."""
    if isinstance(exc, OSError) and not isinstance(exc, MinifcnError) and exc.filename:
        reason = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {reason}"
    return one_line(exc)


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command's parser: "minifcn describe: error: ..."
        parser.commands.get(args.command, parser).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    keep_freed_memory()  # a process-wide allocator setting: the command's to make
    try:
        args.device = resolve_device(args.device)
        return int(args.func(args) or 0)
    except WorkerFailed as exc:  # a training worker died or failed; the run is saved
        if args.debug:
            traceback.print_exc()
        print(f"minifcn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (MinifcnError, ValueError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"minifcn {args.command}: error: {user_error_message(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        if args.debug:
            traceback.print_exc()
        print(f"minifcn {args.command}: error: out of memory; use smaller images, a smaller "
              "--batch-size or --width, or a machine with more memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minifcn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
