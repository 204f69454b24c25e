"""safetensors files with torchvision names and with timm's vgg16.tv_in1k names, and crafted
headers (written byte by byte) that disagree with their file."""
import json

import numpy as np
import pytest

pytest.importorskip("safetensors")
from safetensors.numpy import save_file  # noqa: E402

from minifcn.npzio import load_npz  # noqa: E402
from minifcn.preprocess import TORCHVISION, Preprocessing  # noqa: E402
from minifcn.weights import WeightFileError, convert  # noqa: E402
from minifcn.weights.safetensors_io import read_safetensors  # noqa: E402
from fuzz_util import read_or_refuse  # noqa: E402
from weights_testutil import assert_same_arrays, to_torchvision, vgg_arrays  # noqa: E402


def to_timm(arrays, head_as_conv):
    """timm's names: features.N as torchvision, fc6/fc7 as convs under pre_logits, head.fc."""
    out = {k: v for k, v in to_torchvision(arrays).items() if k.startswith("features.")}
    out["pre_logits.fc1.weight"], out["pre_logits.fc1.bias"] = arrays["fc6.weight"], arrays["fc6.bias"]
    out["pre_logits.fc2.weight"], out["pre_logits.fc2.bias"] = arrays["fc7.weight"], arrays["fc7.bias"]
    fc8 = arrays["fc8.weight"]
    out["head.fc.weight"] = fc8 if head_as_conv else fc8[:, :, 0, 0]
    out["head.fc.bias"] = arrays["fc8.bias"]
    return out


def test_torchvision_names(tmp_path):
    expected = vgg_arrays(classes=8)
    save_file(to_torchvision(expected), str(tmp_path / "vgg16.safetensors"))
    meta = convert(tmp_path / "vgg16.safetensors", tmp_path / "v.npz")
    assert meta["kind"] == "vgg16" and meta["source"]["format"] == "safetensors"
    assert Preprocessing.from_dict(meta["preprocessing"]) == TORCHVISION
    assert_same_arrays(load_npz(tmp_path / "v.npz")[0], expected)


@pytest.mark.parametrize("head_as_conv", [False, True], ids=["linear-head", "conv-head"])
def test_timm_names(head_as_conv, tmp_path):
    expected = vgg_arrays(classes=8, seed=4)
    save_file(to_timm(expected, head_as_conv), str(tmp_path / "model.safetensors"))
    meta = convert(tmp_path / "model.safetensors", tmp_path / "t.npz")
    assert meta["kind"] == "vgg16" and meta["num_classes"] == 8
    assert_same_arrays(load_npz(tmp_path / "t.npz")[0], expected)


def test_float16_file_is_stored_as_float32(tmp_path):
    expected = vgg_arrays(top=False)
    half = {k: v.astype(np.float16) for k, v in to_torchvision(expected).items()}
    save_file(half, str(tmp_path / "half.safetensors"))
    convert(tmp_path / "half.safetensors", tmp_path / "h.npz")
    arrays = load_npz(tmp_path / "h.npz")[0]
    assert_same_arrays(arrays, {k: v.astype(np.float16).astype(np.float32)
                                for k, v in expected.items()})


def test_truncated_safetensors(tmp_path):
    save_file(to_torchvision(vgg_arrays()), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=r"cut\.safetensors"):
        convert(tmp_path / "cut.safetensors", tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


# Crafted files: the header is data from the internet and must agree with the file.

def crafted(path, header, data=np.arange(4, dtype="<f4").tobytes(), header_bytes=None):
    """8-byte little-endian header length, the JSON header, then ``data``."""
    raw = json.dumps(header).encode() if header_bytes is None else header_bytes
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


def tensor(dtype="F32", shape=(4,), offsets=(0, 16)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


BAD_HEADERS = {  # case: (header or raw header bytes, words expected in the message)
    "not-json": (b"{'a': 1}", "the header is not valid JSON"),
    "not-utf8": (b'{"\xff": 1}', "the header is not valid JSON"),
    "deep-nesting": (b"[" * 50_000 + b"]" * 50_000, "the header is not valid JSON"),
    "a-list": (b"[1, 2]", "the header is a JSON list; expected an object"),
    "twice": (b'{"a": ' + json.dumps(tensor()).encode() + b', "a": '
              + json.dumps(tensor()).encode() + b"}", "the header names 'a' twice"),
    "no-offsets": ({"a": {"dtype": "F32", "shape": [4]}}, "expected dtype, shape and data_off"),
    "unknown-dtype": ({"a": tensor(dtype="F8_E4M3")}, "has dtype 'F8_E4M3'; expected one of"),
    "negative-size": ({"a": tensor(shape=(-4,))}, r"has shape \[-4\]; expected a list of sizes"),
    "float-size": ({"a": tensor(shape=(4.0,))}, r"has shape \[4.0\]"),
    "bool-size": ({"a": tensor(shape=(True, 4))}, r"has shape \[True, 4\]"),
    "absurd-empty": ({"a": tensor(shape=(0, 1 << 62), offsets=(0, 0)),
                      "b": tensor()}, r"has shape \[0, 4611686018427387904\]"),
    "product-overflows": ({"a": tensor(shape=(1 << 62, 1 << 62, 4))}, r"has shape \[4611"),
    "reversed": ({"a": tensor(offsets=(16, 0))}, r"has data_offsets \[16, 0\]"),
    "past-the-end": ({"a": tensor(offsets=(0, 1 << 40))},
                     "ends at byte 1099511627776 of a 16-byte data section"),
    "size-mismatch": ({"a": tensor(shape=(3,))}, r"has shape \(3,\) of F32 = 12 bytes, but "
                                                  "data_offsets give 16"),
    "overlap": ({"a": tensor(), "b": tensor(shape=(2,), offsets=(8, 16))},
                "tensors 'a' and 'b' overlap"),
    "hole": ({"a": tensor(shape=(2,), offsets=(8, 16))}, r"bytes 0\.\.8 of the data section "
                                                         "belong to no tensor"),
    "trailing": ({"a": tensor(shape=(2,), offsets=(0, 8))}, r"bytes 8\.\.16 of the data"),
}


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_header_that_disagrees_with_the_file_is_refused(case, tmp_path):
    header, words = BAD_HEADERS[case]
    path = crafted(tmp_path / "bad.safetensors", header if isinstance(header, dict) else None,
                   header_bytes=header if isinstance(header, bytes) else None)
    assert read_or_refuse(read_safetensors, path) is None
    with pytest.raises(WeightFileError, match=rf"bad\.safetensors: .*{words}"):
        read_safetensors(path)


@pytest.mark.parametrize("declared", [17, 1 << 40, (1 << 64) - 1])
def test_header_length_past_the_file_is_refused(declared, tmp_path):
    path = tmp_path / "long.safetensors"
    path.write_bytes(declared.to_bytes(8, "little") + b'{"a": 1}')
    assert read_or_refuse(read_safetensors, path) is None
    with pytest.raises(WeightFileError, match=rf"long\.safetensors: header length {declared} "):
        read_safetensors(path)


def test_complex_tensor_reads_as_complex64(tmp_path):
    # C64 is (real, imaginary) float32 pairs; refusing it as a weight is convert's job,
    # which names the key (test_weights_convert), so the reader must not lose the parts.
    data = np.array([1.5, -2.0, 0.0, 3.0], "<f4").tobytes()
    path = crafted(tmp_path / "c.safetensors", {"a": tensor(dtype="C64", shape=(2,))}, data)
    values = read_safetensors(path)["a"]
    assert values.dtype == np.complex64
    np.testing.assert_array_equal(values, [1.5 - 2.0j, 3.0j])


def test_bool_tensor_is_not_a_weight(tmp_path):
    path = crafted(tmp_path / "b.safetensors", {"a": tensor(dtype="BOOL", shape=(16,))})
    with pytest.raises(WeightFileError, match=r"b\.safetensors: tensor 'a' holds booleans"):
        read_safetensors(path)


def test_bfloat16_reads_as_float32(tmp_path):
    # bfloat16 is float32's upper 16 bits: 0x3F80 = 1.0, 0xC020 = -2.5, 0x3E20 = 0.15625.
    data = np.array([0x3F80, 0xC020, 0x3E20, 0x0000], "<u2").tobytes()
    path = crafted(tmp_path / "bf.safetensors",
                   {"w": tensor(dtype="BF16", shape=(2, 2), offsets=(0, 8))}, data)
    values = read_safetensors(path)["w"]
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, [[1.0, -2.5], [0.15625, 0.0]])


def test_metadata_and_extra_fields_are_ignored(tmp_path):
    header = {"__metadata__": {"format": "pt"}, "a": dict(tensor(), extra="ignored")}
    path = crafted(tmp_path / "m.safetensors", header)
    np.testing.assert_array_equal(read_safetensors(path)["a"], [0, 1, 2, 3])


def test_tensor_name_that_is_not_text_gives_a_one_line_error(tmp_path):
    path = crafted(tmp_path / "n.safetensors", {"features.0.weight\nrm -rf": tensor()})
    assert read_or_refuse(read_safetensors, path) is None
    with pytest.raises(WeightFileError, match=r"n\.safetensors: tensor .* is not printable"):
        read_safetensors(path)


def test_scalar_where_conv5_3_weight_should_be_is_a_file_error(tmp_path):
    # fc6 is reshaped by conv5_3's output channels: a 0-d conv5_3 weight has none
    header = {"features.28.weight": tensor(shape=(), offsets=(0, 4)),
              "classifier.0.weight": tensor(shape=(3,), offsets=(4, 16))}
    path = crafted(tmp_path / "s.safetensors", header)
    with pytest.raises(WeightFileError, match=r"s\.safetensors: "):
        convert(path, tmp_path / "s.npz")
