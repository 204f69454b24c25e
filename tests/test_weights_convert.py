"""Format detection from bytes, error messages, atomic output, the convert CLI, light imports."""
import argparse
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minifcn.npzio import save_npz
from minifcn.weights import WeightFileError, convert, detect_format, load_converted
from minifcn.weights.cli import add_convert_parser, add_download_parser
from weights_testutil import assert_same_arrays, vgg_arrays

TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def safetensors_bytes():
    header = b'{"__metadata__":{}}'
    return len(header).to_bytes(8, "little") + header


SIGNATURES = {
    "torch-legacy": (pickle.dumps(TORCH_MAGIC, protocol=2) + b"\x80\x02M\xe9\x03.", "torch"),
    "hdf5": (b"\x89HDF\r\n\x1a\n" + bytes(100), "keras"),
    "safetensors": (safetensors_bytes(), "safetensors"),
    "caffe-new": (b"\x0a\x03net" + b"\xa2\x06\x02\x0a\x00", "caffe"),
    "caffe-v1": (b"\x0a\x03vgg" + b"\x12\x02\x22\x00", "caffe"),
    "text": (b"hello, this is not a weight file\n", None),
    "empty": (b"", None),
}


@pytest.mark.parametrize("case", SIGNATURES)
def test_detect_format_from_bytes(case, tmp_path):
    data, expected = SIGNATURES[case]
    path = tmp_path / "weights.bin"  # the name says nothing
    path.write_bytes(data)
    assert detect_format(path) == expected


def test_detect_torch_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "w.bin", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
    assert detect_format(tmp_path / "w.bin") == "torch"


def test_unknown_format_names_the_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(b"hello, this is not a weight file\n")
    with pytest.raises(WeightFileError, match=r"notes\.pth: unknown format"):
        convert(path, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_format_mismatch_names_the_file(tmp_path):
    path = tmp_path / "vgg.h5"
    path.write_bytes(SIGNATURES["caffe-new"][0])
    with pytest.raises(WeightFileError, match=r"vgg\.h5: --format keras given, but .* caffe file"):
        convert(path, tmp_path / "out.npz", format="keras")


def test_forced_format_on_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"hello, this is not a weight file\n")
    with pytest.raises(WeightFileError, match=r"junk\.pth: truncated or corrupt torch file"):
        convert(path, tmp_path / "out.npz", format="torch")


def test_zip_without_pickle_is_not_torch(tmp_path):
    save_npz(tmp_path / "already.npz", {"a": np.zeros(2, np.float32)})
    with pytest.raises(WeightFileError, match=r"already\.npz: a zip archive without data\.pkl"):
        convert(tmp_path / "already.npz", tmp_path / "out.npz")


def test_failed_conversion_keeps_an_existing_output(tmp_path):
    dst = tmp_path / "out.npz"
    dst.write_bytes(b"previous result")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(pickle.dumps(TORCH_MAGIC, protocol=2))  # header, then nothing
    with pytest.raises(WeightFileError, match=r"bad\.pth"):
        convert(bad, dst)
    assert dst.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth", "out.npz"]


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = save_npz(tmp_path / "model.npz", {"a": np.zeros(1, np.float32)})
        os.umask(0o027)
        group = save_npz(tmp_path / "group.npz", {"a": np.zeros(1, np.float32)})
        assert os.umask(0o027) == 0o027  # left as it was
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644  # as open() would make it, not mkstemp's 0o600
    assert group.stat().st_mode & 0o777 == 0o640
    group.unlink()
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        convert(tmp_path / "nowhere.pth", tmp_path / "out.npz")


def test_load_converted_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file
    from weights_testutil import to_torchvision
    expected = vgg_arrays()
    save_file(to_torchvision(expected), str(tmp_path / "v.safetensors"))
    meta = convert(tmp_path / "v.safetensors", tmp_path / "v.npz")
    arrays, again = load_converted(tmp_path / "v.npz")
    assert again == meta
    assert_same_arrays(arrays, expected)
    save_npz(tmp_path / "plain.npz", {"a": np.zeros(1, np.float32)})
    with pytest.raises(WeightFileError, match="not a converted minifcn weight file"):
        load_converted(tmp_path / "plain.npz")


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="minifcn")
    sub = parser.add_subparsers()
    add_convert_parser(sub)
    add_download_parser(sub)
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_convert_failure_is_one_line(tmp_path, capsys):
    path = tmp_path / "junk.caffemodel"
    path.write_bytes(b"hello, this is not a weight file\n")
    assert run_cli("convert", str(path), str(tmp_path / "o.npz")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minifcn convert: error: ")
    assert "junk.caffemodel" in err and "Traceback" not in err


def test_cli_download_list(capsys):
    assert run_cli("download", "list") == 0
    out = capsys.readouterr().out
    for name in ("vgg16-torchvision", "vgg16-keras-notop", "vgg16-caffe", "fcn8s-atonce-pascal"):
        assert name in out


def test_cli_download_unknown_name(capsys):
    assert run_cli("download", "resnet50") == 1
    assert "unknown weight file 'resnet50'" in capsys.readouterr().err


def test_import_is_light():
    code = ("import sys, minifcn.weights, minifcn.weights.cli; "
            "print(sorted(m for m in ('torch', 'h5py', 'safetensors', 'google.protobuf') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert out.stdout.strip() == "[]"
