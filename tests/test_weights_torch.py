"""torch .pth files (zip and legacy) read without torch, checked against torch itself.

torch is used only here, to write the files and as the numerical reference; the package
never imports it.
"""
import hashlib
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from minifcn.npzio import load_npz  # noqa: E402
from minifcn.preprocess import CAFFE_FCN, TORCHVISION, Preprocessing  # noqa: E402
from minifcn.weights import UnsafePickleError, WeightFileError, convert, load_torch_file  # noqa: E402
from fuzz_util import read_or_refuse  # noqa: E402
from weights_testutil import assert_same_arrays, fcn_arrays, to_torchvision, vgg_arrays  # noqa: E402

FORMATS = {"zip": True, "legacy": False}  # value: _use_new_zipfile_serialization


def save_torch(arrays, path, legacy):
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_torchvision_vgg16_converts(fmt, tmp_path):
    expected = vgg_arrays(classes=10)
    src = save_torch(to_torchvision(expected), tmp_path / "vgg16-narrow.pth", fmt == "legacy")
    meta = convert(src, tmp_path / "out.npz")
    arrays, stored = load_npz(tmp_path / "out.npz")
    assert_same_arrays(arrays, expected)
    assert stored == meta
    assert meta["kind"] == "vgg16" and meta["num_classes"] == 10 and meta["width"] == 1 / 16
    assert Preprocessing.from_dict(meta["preprocessing"]) == TORCHVISION
    assert meta["source"] == {"file": "vgg16-narrow.pth", "format": "torch",
                              "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_offsets_and_dtypes(fmt, tmp_path):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    sd = {
        "transposed": base.t(),                      # strides (1, 10)
        "sliced": base[2:5, 3:9:2],                  # offset 23, strides (10, 2)
        "row": base[4],                              # shares the storage, offset 40
        "half": torch.linspace(-2, 2, 7, dtype=torch.float16),
        "bf16": torch.linspace(-3, 3, 5, dtype=torch.bfloat16),
        "double": torch.randn(2, 3, dtype=torch.float64),
        "param": nn.Parameter(torch.randn(3, 2)),
    }
    torch.save(sd, tmp_path / "v.pth", _use_new_zipfile_serialization=FORMATS[fmt])
    got = load_torch_file(tmp_path / "v.pth")
    for key, tensor in sd.items():
        ref = tensor.detach().float() if tensor.dtype == torch.bfloat16 else tensor.detach()
        np.testing.assert_array_equal(got[key], ref.numpy(), err_msg=key)
        assert got[key].dtype == ref.numpy().dtype


@pytest.mark.parametrize("fmt", FORMATS)
def test_module_state_dict_with_metadata(fmt, tmp_path):
    # A real state_dict() is an OrderedDict carrying a `_metadata` attribute (pickle BUILD).
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    torch.save(model.state_dict(), tmp_path / "m.pth", _use_new_zipfile_serialization=FORMATS[fmt])
    got = load_torch_file(tmp_path / "m.pth")
    assert list(got) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for key, tensor in model.state_dict().items():
        np.testing.assert_array_equal(got[key], tensor.numpy())


@pytest.mark.parametrize("fmt", FORMATS)
def test_fcn_state_dict_in_minifcn_names(fmt, tmp_path):
    expected = fcn_arrays("fcn16s", classes=4)
    src = save_torch(expected, tmp_path / "fcn16s_from_caffe.pth", fmt == "legacy")
    meta = convert(src, tmp_path / "fcn.npz")
    assert meta["kind"] == "fcn16s" and meta["num_classes"] == 4
    assert Preprocessing.from_dict(meta["preprocessing"]) == CAFFE_FCN
    assert_same_arrays(load_npz(tmp_path / "fcn.npz")[0], expected)


def test_checkpoint_wrapper_and_preprocessing_override(tmp_path):
    expected = vgg_arrays()
    sd = {k: torch.from_numpy(v) for k, v in to_torchvision(expected).items()}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "ckpt.pth")
    meta = convert(tmp_path / "ckpt.pth", tmp_path / "o.npz", preprocessing="caffe-vgg")
    assert meta["preprocessing"]["channel_order"] == "BGR"
    assert_same_arrays(load_npz(tmp_path / "o.npz")[0], expected)


class RunsACommand:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["pickle", "torch-zip", "torch-legacy"])
def test_malicious_pickle_is_refused_and_not_run(how, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"features.0.weight": RunsACommand(marker)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=how == "torch-zip")
    with pytest.raises(UnsafePickleError, match=r"evil\.pth: refused .*system"):
        convert(path, tmp_path / "out.npz")
    assert not marker.exists()
    assert not (tmp_path / "out.npz").exists()


def test_whole_pickled_model_is_refused(tmp_path):
    torch.save(nn.Linear(2, 3), tmp_path / "model.pth")
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear"):
        load_torch_file(tmp_path / "model.pth")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file_is_named_and_leaves_nothing(fmt, tmp_path):
    src = save_torch(to_torchvision(vgg_arrays()), tmp_path / "full.pth", fmt == "legacy")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    with pytest.raises(WeightFileError, match="cut.pth"):
        convert(cut, tmp_path / "out.npz")
    assert sorted(tmp_path.iterdir()) == sorted([src, cut])


@pytest.mark.parametrize("fmt", FORMATS)
def test_integer_and_bool_storages_read_as_before(fmt, tmp_path):
    sd = {"i64": torch.arange(-3, 3), "i32": torch.arange(-2, 2, dtype=torch.int32),
          "i16": torch.tensor([-300, 7], dtype=torch.int16),
          "i8": torch.tensor([-128, 127], dtype=torch.int8),
          "u8": torch.arange(250, 256, dtype=torch.uint8), "bool": torch.tensor([True, False, True])}
    torch.save(sd, tmp_path / "ints.pth", _use_new_zipfile_serialization=FORMATS[fmt])
    got = load_torch_file(tmp_path / "ints.pth")
    for key, tensor in sd.items():
        np.testing.assert_array_equal(got[key], tensor.numpy(), err_msg=key)
        assert got[key].dtype == tensor.numpy().dtype, key


def small_state_dict():
    return {"conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2),
            "conv.bias": torch.tensor([0.5, -1.5]), "half": torch.ones(3, dtype=torch.float16),
            "t": torch.arange(6.0).reshape(2, 3).t()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_at_many_cut_points_is_refused(fmt, tmp_path):
    full = tmp_path / "full.pth"
    torch.save(small_state_dict(), full, _use_new_zipfile_serialization=FORMATS[fmt])
    blob = full.read_bytes()
    cut = tmp_path / "cut.pth"
    step = max(1, len(blob) // 200)  # ~200 cuts: into every header, pickle and storage
    for end in [*range(0, len(blob), step), len(blob) - 1]:
        cut.write_bytes(blob[:end])
        assert read_or_refuse(load_torch_file, cut) is None, f"cut at {end} of {len(blob)} loaded"


def rezip(members, path, compression=zipfile.ZIP_STORED):
    """Write ``[(name, bytes), ...]`` as a zip (duplicate names included) and return the path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def torch_zip_members(tmp_path):
    torch.save(small_state_dict(), tmp_path / "real.pth")
    with zipfile.ZipFile(tmp_path / "real.pth") as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


def storage_member(members):
    return next(i for i, (name, _) in enumerate(members) if "/data/" in name)


def with_flag_bit(blob, bit):
    """The zip ``blob`` with general-purpose flag ``bit`` set in every header."""
    blob = bytearray(blob)
    for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local, central
        start = 0
        while (start := blob.find(signature, start)) >= 0:
            blob[start + at] |= 1 << bit
            start += 4
    return bytes(blob)


ZIP_ODDITIES = {
    "appears twice": lambda m, p: rezip(m + [m[storage_member(m)]], p),
    "lies outside the archive folder": lambda m, p: rezip(m + [("elsewhere/notes", b"hi")], p),
    "2 data.pkl files": lambda m, p: rezip(m + [("copy/data.pkl", m[0][1])], p),
    "is encrypted": lambda m, p: p.write_bytes(with_flag_bit(rezip(m, p).read_bytes(), 0)),
    "compression method 12": lambda m, p: rezip(m, p, zipfile.ZIP_BZIP2),
    "data.pkl is 17825792 bytes": lambda m, p: rezip(
        [(m[0][0], m[0][1] + bytes((17 << 20) - len(m[0][1])))] + m[1:], p, zipfile.ZIP_DEFLATED),
}


@pytest.mark.parametrize("oddity", ZIP_ODDITIES)
def test_zip_oddities_are_refused(oddity, tmp_path):
    members = torch_zip_members(tmp_path)
    assert members[0][0].endswith("/data.pkl")
    path = tmp_path / "odd.pth"
    ZIP_ODDITIES[oddity](members, path)
    with pytest.raises(WeightFileError, match=rf"^odd\.pth: .*{oddity}"):
        load_torch_file(path)
    assert read_or_refuse(load_torch_file, path) is None


def test_storage_with_a_bad_crc_is_refused(tmp_path):
    members = torch_zip_members(tmp_path)
    i = storage_member(members)
    name, data = members[i]
    path = rezip(members, tmp_path / "crc.pth")
    blob = bytearray(path.read_bytes())
    at = blob.index(data, blob.index(name.encode()))  # the member's bytes, after its header
    blob[at] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(WeightFileError, match=r"^crc\.pth: .*Bad CRC-32"):
        load_torch_file(path)


# --- numerical parity with torch: the backbone and the convolutionalized classifier --------

def torch_vgg(arrays):
    """torchvision's VGG16 layout built from torch.nn, loaded with ``arrays``."""
    layers, cin = [], 3
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n_convs + 1):
            cout = arrays[f"conv{block}_{i}.weight"].shape[0]
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    features = nn.Sequential(*layers)
    f, classes = arrays["fc6.weight"].shape[0], arrays["fc8.weight"].shape[0]
    classifier = nn.Sequential(nn.Linear(cin * 49, f), nn.ReLU(True), nn.Dropout(),
                               nn.Linear(f, f), nn.ReLU(True), nn.Dropout(), nn.Linear(f, classes))
    model = nn.ModuleDict({"features": features, "classifier": classifier}).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in to_torchvision(arrays).items()})
    return model


def minifcn_pool5(arrays, x):
    """conv1_1..pool5 composed from minifcn.ops (plain VGG: pad 1, floor pooling)."""
    ops = pytest.importorskip("minifcn.ops", reason="minifcn.ops not available yet")
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n_convs + 1):
            name = f"conv{block}_{i}"
            x, _ = ops.conv2d_forward(x, arrays[f"{name}.weight"], arrays[f"{name}.bias"], 1, 1)
            x, _ = ops.relu_forward(x)
        x, _ = ops.max_pool2d_forward(x, 2, 2, 0, ceil_mode=False)
    return x


def fc_as_convs(arrays, pool5):
    """fc6 (7x7) -> relu -> fc7 (1x1) -> relu -> fc8 (1x1), all as convolutions."""
    ops = pytest.importorskip("minifcn.ops", reason="minifcn.ops not available yet")
    x = pool5
    for name in ("fc6", "fc7", "fc8"):
        x, _ = ops.conv2d_forward(x, arrays[f"{name}.weight"], arrays[f"{name}.bias"], 1, 0)
        if name != "fc8":
            x, _ = ops.relu_forward(x)
    return x


@pytest.fixture(scope="module")
def converted_narrow_vgg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    source = vgg_arrays(classes=12, seed=3)
    save_torch(to_torchvision(source), tmp / "vgg.pth", legacy=True)
    convert(tmp / "vgg.pth", tmp / "vgg.npz")
    return load_npz(tmp / "vgg.npz")[0], torch_vgg(source)


def test_pool5_matches_torch_features(converted_narrow_vgg):
    arrays, model = converted_narrow_vgg
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ours = minifcn_pool5(arrays, x)
    with torch.no_grad():
        ref = model["features"](torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape == (1, 32, 7, 7)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_convolutionalized_classifier_equals_linear_layers(converted_narrow_vgg):
    arrays, model = converted_narrow_vgg
    pool5 = np.random.default_rng(1).standard_normal((2, 32, 7, 7)).astype(np.float32)
    ours = fc_as_convs(arrays, pool5)
    with torch.no_grad():
        ref = model["classifier"](torch.from_numpy(pool5).flatten(1)).numpy()
    assert ours.shape == (2, 12, 1, 1)
    np.testing.assert_allclose(ours[:, :, 0, 0], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_fc6_slides_over_a_larger_pool5(converted_narrow_vgg):
    # On a larger input the same weights give a map; each position is the classifier
    # applied to the 7x7 window of pool5 under it.
    arrays, model = converted_narrow_vgg
    pool5 = np.random.default_rng(2).standard_normal((1, 32, 9, 8)).astype(np.float32)
    ours = fc_as_convs(arrays, pool5)
    assert ours.shape == (1, 12, 3, 2)
    with torch.no_grad():
        for i in range(3):
            for j in range(2):
                window = torch.from_numpy(pool5[:, :, i:i + 7, j:j + 7].copy()).flatten(1)
                ref = model["classifier"](window).numpy()
                np.testing.assert_allclose(ours[:, :, i, j], ref, rtol=1e-4,
                                           atol=1e-5 * np.abs(ref).max())
