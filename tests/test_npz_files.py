"""Hostile and damaged model .npz files: each case refused naming the file, before any big
allocation; non-finite and non-real weights refused naming the key (with an opt-out)."""
import io
import json
import math
import zipfile

import numpy as np
import pytest
from fuzz_util import read_or_refuse

from minifcn.cli import main
from minifcn.errors import FileFormatError
from minifcn.models import FCN32s, load_model, save_model
from minifcn.npzio import load_npz, save_npz

SMALL = dict(num_classes=3, width=1 / 64)  # conv1_1 has 1 channel, fc6/fc7 64


def model_file(tmp_path, name="m.npz", arrays=None, **meta_changes):
    """A small FCN-32s saved as a model file, with metadata fields replaced (None deletes)."""
    model = FCN32s(**SMALL)
    meta = {"minifcn_weights": 1, **model.metadata(), "preprocessing": None}
    for key, value in meta_changes.items():
        meta.pop(key) if value is None else meta.__setitem__(key, value)
    state = model.state_dict()
    state.update(arrays or {})
    return save_npz(tmp_path / name, state, meta)


def npy_bytes(descr, shape, data=b""):
    """A .npy member written by hand: numpy's header writer, then ``data`` as it is."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return out.getvalue() + data


def zip_file(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def refusal(read, path):
    """The message of the project's error that ``read`` refuses ``path`` with (checked to
    stay within the time and allocation bound of every reader)."""
    assert read_or_refuse(read, path) is None, f"{path.name} was accepted"
    with pytest.raises(FileFormatError) as err:
        read(path)
    return str(err.value)


def test_a_good_model_file_loads(tmp_path):
    model = load_model(model_file(tmp_path))
    assert isinstance(model, FCN32s) and model.num_classes == 3 and model.width == 1 / 64


@pytest.mark.parametrize("field, value", [
    ("width", 1e6), ("width", 0), ("width", -0.5), ("width", math.nan), ("width", "1"),
    ("num_classes", 2 ** 40), ("num_classes", 0), ("num_classes", 3.5), ("num_classes", True),
    ("pad", 10 ** 9), ("pad", -1), ("dropout", 1.0), ("learn_upsampling", "yes"),
])
def test_metadata_out_of_range_is_refused_naming_file_and_field(tmp_path, field, value):
    message = refusal(load_model, model_file(tmp_path, **{field: value}))
    assert "m.npz" in message and field in message


@pytest.mark.parametrize("kind", ["fcn64s", ["fcn8s"], None])
def test_unknown_model_kind_is_refused(tmp_path, kind):
    message = refusal(load_model, model_file(tmp_path, kind=kind))
    assert "model kind" in message and "fcn8s" in message


@pytest.mark.parametrize("kind, pad", [("fcn8s", 68), ("fcn16s", 72), ("fcn32s", 80)])
def test_padding_too_small_for_the_final_crop(tmp_path, kind, pad):
    # the final crop starts at 31, 27, 19 for pad 100: one pixel less padding than
    # 69, 73, 81 would put it before the image (found by fuzzing)
    path = model_file(tmp_path, kind=kind, pad=pad)
    assert f"pad={pad} does not fit a {kind} network" in refusal(load_model, path)


def test_the_least_padding_that_fits_loads(tmp_path):
    model = load_model(model_file(tmp_path, pad=81))  # FCN-32s: offset 19 - (100 - 81) = 0
    assert model.pad == 81 and model.offsets["score"] == 0


def test_class_count_disagreeing_with_the_arrays(tmp_path):
    message = refusal(load_model, model_file(tmp_path, num_classes=5))
    assert "num_classes is 5" in message and "score_fr.weight has 3 rows" in message


def test_width_disagreeing_with_the_arrays(tmp_path):
    message = refusal(load_model, model_file(tmp_path, width=1 / 32))
    assert "conv1_1.weight: expected shape (2, 3, 3, 3), found (1, 3, 3, 3)" in message


def test_an_array_of_the_wrong_shape(tmp_path):
    path = model_file(tmp_path, arrays={"fc7.bias": np.zeros(65, np.float32)})
    assert "fc7.bias: expected shape (64,), found (65,)" in refusal(load_model, path)


def test_npy_header_claiming_a_huge_shape_in_a_tiny_member(tmp_path):
    path = zip_file(tmp_path / "huge.npz", {"w.npy": npy_bytes("<f4", (1 << 33,), b"\0" * 16)})
    message = refusal(load_npz, path)
    assert "'w.npy'" in message and "(8589934592,)" in message and "16 bytes" in message


def test_npy_header_claiming_more_than_its_member_holds(tmp_path):
    path = zip_file(tmp_path / "short.npz", {"w.npy": npy_bytes("<f4", (10,), b"\0" * 8)})
    assert "40 bytes), but the member holds 8 bytes" in refusal(load_npz, path)


def test_npy_header_with_an_unclosed_bracket(tmp_path):
    # numpy's header parser lets tokenize's own error out for this one (found by fuzzing)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, }"
    header += b" " * (117 - len(header)) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(4)
    path = zip_file(tmp_path / "bracket.npz", {"w.npy": member})
    assert "not a readable .npz archive" in refusal(load_npz, path)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    import pickle

    path = zip_file(tmp_path / "obj.npz",
                    {"w.npy": npy_bytes("|O", (1,), pickle.dumps([print], protocol=2))})
    message = refusal(load_npz, path)
    assert "Python objects" in message and "unpickling" in message


def test_structured_arrays_are_refused(tmp_path):
    descr = [("a", "<f4"), ("b", "<i4")]
    path = zip_file(tmp_path / "rec.npz", {"w.npy": npy_bytes(descr, (2,), b"\0" * 16)})
    assert "not an array of numbers or text" in refusal(load_npz, path)


def test_declared_uncompressed_size_is_bounded(tmp_path):
    # 64 MiB of deflated zeros in a 65 kB file: a valid archive, but out of all proportion.
    path = tmp_path / "bomb.npz"
    count = 16 << 20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("w.npy", "w", force_zip64=True) as member:
            member.write(npy_bytes("<f4", (count,)))
            zeros = bytes(1 << 20)
            for _ in range(count * 4 // len(zeros)):
                member.write(zeros)
    assert path.stat().st_size < 200_000
    assert "uncompressed bytes" in refusal(load_npz, path)


def test_compressed_files_still_load(tmp_path):
    arrays = {"a": np.zeros((300, 300), np.float32), "b": np.arange(5.0)}
    arrays2, meta = load_npz(save_npz(tmp_path / "c.npz", arrays, {"x": 1}, compress=True))
    assert meta == {"x": 1}
    for key, value in arrays.items():
        np.testing.assert_array_equal(arrays2[key], value)


def test_arrays_read_back_as_numpy_wrote_them(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"fortran": np.asfortranarray(rng.standard_normal((3, 4, 5))),
              "big_endian": rng.standard_normal((2, 3)).astype(">f4"),
              "scalar": np.float32(2.5), "empty": np.zeros((0, 7), np.float32),
              "text": np.array(["ab", "cde"]), "flags": np.array([True, False]),
              "large": rng.standard_normal(600_000).astype(np.float32)}  # several read chunks
    path = tmp_path / "plain.npz"
    np.savez(path, **arrays)
    loaded, meta = load_npz(path)
    assert meta == {} and sorted(loaded) == sorted(arrays)
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == np.shape(value), key
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("record", ["[1, 2]", "[" * 100_000, "{", "3"],
                         ids=["list", "nested 100000 deep", "cut short", "number"])
def test_metadata_that_is_not_a_json_object(tmp_path, record):
    path = tmp_path / "meta.npz"
    np.savez(path, w=np.zeros(2, np.float32), __meta__=np.array(record))
    assert "metadata record" in refusal(load_npz, path)


@pytest.mark.parametrize("record", [[1, 2, 3], {"channel_order": "BGR"},
                                    {"channel_order": "BGR", "scale": 255, "mean": 7},
                                    {"channel_order": "BGR", "scale": math.nan, "mean": [1, 2, 3]},
                                    {"channel_order": "RGB", "scale": 1, "mean": [0, 0, 0],
                                     "std": [0, 1, 1]}])
def test_malformed_preprocessing_is_refused(tmp_path, record):
    message = refusal(load_model, model_file(tmp_path, preprocessing=record))
    assert "metadata preprocessing" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_are_refused_naming_the_key(tmp_path, bad):
    weight = FCN32s(**SMALL).state_dict()["fc6.weight"].copy()
    weight[2, 0, 1, 3] = bad
    path = model_file(tmp_path, arrays={"fc6.weight": weight})
    message = refusal(load_model, path)
    assert "fc6.weight holds 1 non-finite value" in message and "(2, 0, 1, 3)" in message
    assert "allow_nonfinite" in message
    model = load_model(path, allow_nonfinite=True)  # the opt-out loads it as it is
    np.testing.assert_array_equal(model.state_dict()["fc6.weight"], weight)


def test_nonfinite_weights_are_counted(tmp_path):
    bias = np.zeros(64, np.float32)
    bias[[7, 9, 40]] = [np.inf, np.nan, -np.inf]
    message = refusal(load_model, model_file(tmp_path, arrays={"fc7.bias": bias}))
    assert "fc7.bias holds 3 non-finite values" in message and "first at index (7,)" in message


def test_float64_weights_too_large_for_float32_are_refused(tmp_path):
    bias = np.zeros(64)
    bias[5] = 1e300  # finite in the file, inf in the float32 network
    message = refusal(load_model, model_file(tmp_path, arrays={"fc7.bias": bias}))
    assert "fc7.bias holds 1 non-finite value" in message


@pytest.mark.parametrize("dtype, words", [(np.complex64, "complex numbers"),
                                          (np.int32, "integers"), ("<U3", "text")])
def test_other_dtypes_get_a_message_about_the_dtype(tmp_path, dtype, words):
    path = model_file(tmp_path, arrays={"fc7.bias": np.ones(64, dtype)})
    message = refusal(load_model, path)
    assert f"fc7.bias has dtype {np.dtype(dtype)} ({words})" in message
    assert "real floating-point" in message
    # the opt-out is for NaN and inf only: it does not let an imaginary part be dropped
    with pytest.raises(FileFormatError, match="fc7.bias has dtype"):
        load_model(path, allow_nonfinite=True)


def test_float16_weights_load_exactly(tmp_path):
    bias = np.linspace(-2, 2, 64).astype(np.float16)
    model = load_model(model_file(tmp_path, arrays={"fc7.bias": bias}))
    np.testing.assert_array_equal(model.state_dict()["fc7.bias"], bias.astype(np.float32))


@pytest.mark.parametrize("case", ["huge width", "nan", "not a zip", "missing"])
def test_commands_print_one_line_for_a_bad_model_file(tmp_path, capsys, case):
    path = tmp_path / "bad.npz"
    if case == "huge width":
        model_file(tmp_path, "bad.npz", width=1e6)
    elif case == "nan":
        model_file(tmp_path, "bad.npz", arrays={"fc7.bias": np.full(64, np.nan, np.float32)})
    elif case == "not a zip":
        path.write_bytes(b"PK\x03\x04 and then nothing a zip needs")
    assert main(["predict", str(tmp_path / "no-image.png"), "--weights", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minifcn predict: error: ")
    assert "bad.npz" in err and "Traceback" not in err


def test_atomic_write_into_a_folder_names_the_folder(tmp_path):
    from minifcn.npzio import atomic_write

    target = tmp_path / "out.npz"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        atomic_write(target, lambda tmp: open(tmp, "wb").close())
    assert info.value.filename == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary file left


def test_atomic_write_names_the_file_asked_for_not_its_temporary(tmp_path, monkeypatch):
    import errno

    from minifcn import npzio

    def refused(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}abc{suffix}")

    monkeypatch.setattr(npzio.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as info:
        npzio.atomic_write(tmp_path / "model.npz", lambda tmp: None)
    assert info.value.filename == str(tmp_path / "model.npz")


def test_a_torch_file_given_as_a_model_says_convert_it(tmp_path):
    import zipfile

    from minifcn.npzio import load_npz

    path = tmp_path / "vgg16.pth"
    with zipfile.ZipFile(path, "w") as archive:  # torch >= 1.6 layout: <name>/data.pkl + storages
        archive.writestr("vgg16/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("vgg16/data/0", b"\x00" * 16)
    with pytest.raises(FileFormatError, match="PyTorch file.*minifcn convert"):
        load_npz(path)
