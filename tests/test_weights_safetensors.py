"""safetensors files with torchvision names and with timm's vgg16.tv_in1k names."""
import numpy as np
import pytest

pytest.importorskip("safetensors")
from safetensors.numpy import save_file  # noqa: E402

from minifcn.npzio import load_npz  # noqa: E402
from minifcn.preprocess import TORCHVISION, Preprocessing  # noqa: E402
from minifcn.weights import WeightFileError, convert  # noqa: E402
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
