"""Format detection from bytes, error messages, atomic output, the convert CLI, light imports;
non-finite and non-real weights, and an output that is the source itself."""
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minifcn.cli import main
from minifcn.errors import MinifcnError, UsageError
from minifcn.npzio import save_npz
from minifcn.weights import WeightFileError, convert, detect_format, load_converted
from weights_testutil import assert_same_arrays, to_torchvision, vgg_arrays

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


def test_folder_as_source_is_called_a_folder(tmp_path):
    # a folder is there, so "no such file" would send the user looking for a missing path
    (tmp_path / "weights.pth").mkdir()
    with pytest.raises(IsADirectoryError, match=r"weights\.pth: is a folder"):
        convert(tmp_path / "weights.pth", tmp_path / "out.npz")


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
    """The whole command line, as a user runs it (errors printed by its one handler)."""
    return main(list(argv))


def one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"minifcn {command}: error: "), err
    assert "Traceback" not in err
    return err


def test_cli_convert_failure_is_one_line(tmp_path, capsys):
    path = tmp_path / "junk.caffemodel"
    path.write_bytes(b"hello, this is not a weight file\n")
    assert run_cli("convert", str(path), str(tmp_path / "o.npz")) == 1
    assert "junk.caffemodel" in one_error_line(capsys, "convert")


def test_cli_download_list(capsys):
    assert run_cli("download", "list") == 0
    out = capsys.readouterr().out
    for name in ("vgg16-torchvision", "vgg16-keras-notop", "vgg16-caffe", "fcn8s-atonce-pascal"):
        assert name in out


def test_cli_download_unknown_name(capsys):
    assert run_cli("download", "resnet50") == 1
    assert "unknown weight file 'resnet50'" in one_error_line(capsys, "download")


def test_import_is_light():
    code = ("import sys, minifcn.weights, minifcn.weights.cli; "
            "print(sorted(m for m in ('torch', 'h5py', 'safetensors', 'google.protobuf') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert out.stdout.strip() == "[]"


def safetensors_source(path, change=None):
    """A narrow torchvision VGG16 as safetensors; ``change(arrays)`` edits it first."""
    from safetensors.numpy import save_file
    arrays = vgg_arrays()
    if change is not None:
        change(arrays)
    save_file(to_torchvision(arrays), str(path))
    return path


@pytest.mark.parametrize("how", ["same path", "other spelling", "symlink", "hard link"])
def test_convert_refuses_an_output_that_is_the_source(tmp_path, how):
    pytest.importorskip("safetensors")
    src = safetensors_source(tmp_path / "v.safetensors")
    before = src.read_bytes()
    dst = {"same path": src, "other spelling": tmp_path / "." / "v.safetensors",
           "symlink": tmp_path / "link.npz", "hard link": tmp_path / "hard.npz"}[how]
    if how == "symlink":
        dst.symlink_to(src)
    elif how == "hard link":
        os.link(src, dst)
    names = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UsageError, match="is the file SRC .*v.safetensors itself"):
        convert(src, dst)
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # nothing written, no temporary
    assert dst.is_symlink() == (how == "symlink")


def test_convert_refuses_an_output_that_is_the_source_on_the_command_line(tmp_path, capsys):
    pytest.importorskip("safetensors")
    src = safetensors_source(tmp_path / "v.safetensors")
    before = src.read_bytes()
    assert run_cli("convert", str(src), str(src)) == 1
    assert "writing it would destroy the source" in one_error_line(capsys, "convert")
    assert src.read_bytes() == before


def put_nan(arrays):
    arrays["conv3_2.weight"][1, 2, 0, 1] = np.nan


def test_convert_refuses_nonfinite_weights_naming_the_key(tmp_path, capsys):
    pytest.importorskip("safetensors")
    src = safetensors_source(tmp_path / "nan.safetensors", put_nan)
    with pytest.raises(WeightFileError, match=r"nan\.safetensors: conv3_2\.weight holds 1 "
                                              r"non-finite value .* at index \(1, 2, 0, 1\)"):
        convert(src, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()
    assert run_cli("convert", str(src), str(tmp_path / "out.npz")) == 1
    assert "--allow-nonfinite" in one_error_line(capsys, "convert")
    assert not (tmp_path / "out.npz").exists()


def test_convert_allow_nonfinite_writes_them_as_they_are(tmp_path):
    pytest.importorskip("safetensors")
    src = safetensors_source(tmp_path / "nan.safetensors", put_nan)
    assert run_cli("convert", str(src), str(tmp_path / "out.npz"), "--allow-nonfinite") == 0
    with np.load(tmp_path / "out.npz", allow_pickle=False) as f:  # numpy itself as the reader
        weight = f["conv3_2.weight"]
    assert np.isnan(weight[1, 2, 0, 1]) and np.isfinite(weight).sum() == weight.size - 1
    with pytest.raises(WeightFileError, match="conv3_2.weight holds 1 non-finite"):
        load_converted(tmp_path / "out.npz")
    arrays, _ = load_converted(tmp_path / "out.npz", allow_nonfinite=True)
    assert np.isnan(arrays["conv3_2.weight"][1, 2, 0, 1])


def test_convert_complex_weights_get_a_dtype_message(tmp_path):
    pytest.importorskip("safetensors")

    def complex_bias(arrays):
        arrays["fc7.bias"] = arrays["fc7.bias"] + 1j

    src = safetensors_source(tmp_path / "c.safetensors", complex_bias)
    for allow in (False, True):  # not a matter of finiteness: no opt-out drops the imaginary part
        with pytest.raises(WeightFileError, match=r"c\.safetensors: fc7\.bias has dtype "
                                                  r"complex64 \(complex numbers\); weights must "
                                                  r"be real floating-point"):
            convert(src, tmp_path / "out.npz", allow_nonfinite=allow)
    assert not (tmp_path / "out.npz").exists()


def test_convert_without_an_optional_reader_names_the_file_and_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
    path = tmp_path / "w.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(MinifcnError, match=r"w\.h5: .*needs h5py"):
        convert(path, tmp_path / "out.npz")


def test_convert_width_option_is_range_checked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli("convert", "a.pth", "b.npz", "--width", "-1")
    assert exit_.value.code == 2 and "--width" in capsys.readouterr().err
