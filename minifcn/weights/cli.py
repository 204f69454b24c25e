"""``minifcn convert`` and ``minifcn download``: argparse subcommands.

:func:`add_convert_parser` and :func:`add_download_parser` each add one subcommand to an
``argparse`` subparsers object and set ``func`` to a callable ``(args) -> exit code``.
Expected failures (a bad file, a failed download) raise the project's errors
(:mod:`minifcn.errors`), which :func:`minifcn.cli.main` prints as one line with exit status 1.
"""
from __future__ import annotations

from ..cliargs import number
from ..models.spec import MAX_WIDTH
from ..errors import UsageError
from ..preprocess import PRESETS, Preprocessing
from .layout import KINDS

FORMAT_CHOICES = ("auto", "torch", "keras", "caffe", "safetensors")


def _describe(meta) -> str:
    """Two lines on what a converted file holds and the input it needs."""
    kind = meta["kind"]
    what = {"vgg16": "VGG16 with its classifier (fc6/fc7/fc8 as convolutions)",
            "vgg16-notop": "VGG16 backbone only (conv1_1..conv5_3; no fc6/fc7/fc8)",
            "fcn32s": "a whole FCN-32s", "fcn16s": "a whole FCN-16s", "fcn8s": "a whole FCN-8s",
            "fcn8s-atonce": "a whole FCN-8s at-once (fixed pool4/pool3 scales)"}[kind]
    classes = "" if meta["num_classes"] is None else f", {meta['num_classes']} classes"
    width = "" if meta["width"] == 1.0 else f", width {meta['width']:g}"
    spec = Preprocessing.from_dict(meta["preprocessing"]).describe()
    return f"kind {kind}: {what}{classes}{width}\ninput preprocessing: {spec}"


def run_convert(args) -> int:
    """``minifcn convert SRC DST``."""
    from .convert import convert  # noqa: PLC0415 - imported when the command runs
    meta = convert(args.src, args.dst, format=args.format, variant=args.variant,
                   preprocessing=args.preprocessing, width=args.width,
                   allow_nonfinite=args.allow_nonfinite)
    print(f"wrote {args.dst} from {meta['source']['file']} ({meta['source']['format']})")
    print(_describe(meta))
    if meta["kind"] == "vgg16-notop":
        print("note: a backbone-only file; fc6/fc7 of an FCN built from it start untrained")
    return 0


def add_convert_parser(subparsers):
    """Add ``convert SRC DST [--format ...] [--variant ...]`` to ``subparsers``."""
    p = subparsers.add_parser(
        "convert", help="convert torch/Keras/Caffe/safetensors weights to a minifcn .npz",
        description="Convert a VGG16 or FCN weight file to a minifcn .npz. The format is "
                    "read from the file's bytes; the input preprocessing the weights need "
                    "is recorded in the output.")
    p.add_argument("src", help="a .pth, .h5, .caffemodel or .safetensors file")
    p.add_argument("dst", help="the .npz to write")
    p.add_argument("--format", choices=FORMAT_CHOICES, default="auto",
                   help="source format (default: detect from the bytes)")
    p.add_argument("--variant", choices=KINDS, default=None,
                   help="force the network kind, e.g. fcn8s-atonce (same layers as fcn8s)")
    p.add_argument("--preprocessing", choices=sorted(PRESETS), default=None,
                   help="override the recorded input convention")
    p.add_argument("--width", type=number(float, low=0, high=MAX_WIDTH, low_open=True),
                   default=None,
                   help="insist on this channel width (1.0 = full VGG16); default: any")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="write NaN and inf weights too (refused by default, naming the key)")
    p.set_defaults(func=run_convert)
    return p


def run_download(args) -> int:
    """``minifcn download NAME``."""
    from .download import REGISTRY, download, lookup  # noqa: PLC0415
    if args.name == "list":
        for entry in REGISTRY.values():
            size = f"{entry.size / 2**20:.0f} MiB" if entry.size else "size unknown"
            print(f"{entry.name:22s} {entry.filename:52s} {size:>12s}  {entry.note}")
        return 0
    try:
        lookup(args.name)
    except KeyError as exc:  # an unknown name is the user's mistake; KeyError would quote it
        raise UsageError(exc.args[0]) from None
    fetched = download(args.name, args.dest, convert=not args.no_convert,
                       base_url=args.base_url, progress=not args.quiet,
                       deadline=args.deadline, stall_timeout=args.stall_timeout)
    print(f"downloaded {fetched.path}")
    if fetched.npz is not None:
        print(f"converted to {fetched.npz}")
    return 0


def add_download_parser(subparsers):
    """Add ``download NAME [--dest DIR] [--no-convert] [--deadline S] ...`` to ``subparsers``."""
    from ..cliargs import positive  # noqa: PLC0415 - the download parts import their own
    from .transfer import DEADLINE_ENV, MIN_DEADLINE, MIN_RATE, STALL_TIMEOUT  # noqa: PLC0415
    p = subparsers.add_parser(
        "download", help="download known VGG16/FCN weights and convert them",
        description="Download a known weight file into the cache (MINIFCN_HOME, else "
                    "XDG_CACHE_HOME/minifcn, else ~/.cache/minifcn), resuming an "
                    "interrupted download where the server allows it, verify it (its "
                    "checksum, or where none is published, by reading it whole as the "
                    "expected network) and convert it to .npz beside it. Nothing gets the "
                    "final name unless verified. `minifcn download list` shows the known "
                    "files.")
    p.add_argument("name", help="a registry name (or its file name), or 'list'")
    p.add_argument("--dest", default=None, help="folder to download into (default: cache)")
    p.add_argument("--no-convert", action="store_true", help="keep the original file only")
    p.add_argument("--base-url", default=None,
                   help="mirror to download from (default: $MINIFCN_DOWNLOAD_BASE or the "
                        "original URL)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--deadline", type=positive(float), default=None, metavar="SECONDS",
                   help=f"give up when the whole download takes longer (default: "
                        f"${DEADLINE_ENV}, else the file's size at {MIN_RATE // 1000} kB/s, "
                        f"at least {MIN_DEADLINE:g} s)")
    p.add_argument("--stall-timeout", type=positive(float), default=STALL_TIMEOUT,
                   metavar="SECONDS", help="drop a connection silent for this long and "
                                           "resume (default: %(default)g)")
    p.set_defaults(func=run_download)
    return p
