"""Fuzzing the Keras ``.h5`` reader: truncations, bit flips, and crafted links, attributes,
dtypes and storage, every case through :func:`fuzz_util.read_or_refuse`.

A case ends either in a WeightFileError naming the file, or in finite arrays each of whose
values is stored in the fuzzed file itself (as its bytes, in either byte order): never a
value from another file, from a fill value standing in for missing data, or from memory.
Cases that point outside the file (links, external storage, virtual datasets) or declare
more than the file holds must be refused.

The weights are chosen so that corruption alone cannot make them non-finite
(:func:`weights_testutil.fuzz_values`).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

h5py = pytest.importorskip("h5py")

from fuzz_util import assert_finite_arrays, bit_flips, flip_bits, read_or_refuse  # noqa: E402
from minifcn.weights.keras import keras_state_dict, read_keras_h5  # noqa: E402
from test_weights_keras import write_keras_h5  # noqa: E402
from weights_testutil import fuzz_values  # noqa: E402

FUZZ = dict(deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SECRET_VALUE = 12345.0  # what the "other" files hold; it must never come back


def small_layers(seed=0):
    """Few, tiny layers: a ~20 kB file in which most flipped bits land in HDF5's metadata."""
    rng = np.random.default_rng(seed)
    c1, c5, features, classes = 2, 2, 3, 2
    return {"block1_conv1": [fuzz_values((3, 3, 3, c1), rng), fuzz_values(c1, rng)],
            "block5_conv3": [fuzz_values((3, 3, c1, c5), rng), fuzz_values(c5, rng)],
            "fc1": [fuzz_values((49 * c5, features), rng), fuzz_values(features, rng)],
            "predictions": [fuzz_values((features, classes), rng), fuzz_values(classes, rng)]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The two layouts Keras writes (flat ``layer_W_1:0``, nested ``layer/kernel:0``), and
    the 'secret' files a hostile .h5 might point at."""
    root = tmp_path_factory.mktemp("fuzz_h5")
    for style in ("keras1", "keras2"):
        write_keras_h5(root / f"{style}.h5", small_layers(), style)
    (root / "secret.bin").write_bytes(np.full(1024, SECRET_VALUE, "<f4").tobytes())
    with h5py.File(root / "secret.h5", "w") as f:
        f["x"] = np.full((8, 8), SECRET_VALUE, np.float32)
    return root  # (not the bytes: hypothesis prints the arguments of a failing case)


def read(path):
    return keras_state_dict(read_keras_h5(path), path.name)


def file_words(data, itemsize):
    """Every ``itemsize``-byte word of the file at every alignment, in both byte orders,
    sorted (for :func:`in_sorted`)."""
    raw = np.frombuffer(data, np.uint8)
    words = np.concatenate([raw[o:o + (len(raw) - o) // itemsize * itemsize].view(
        f"<u{itemsize}") for o in range(itemsize)])
    return np.unique(np.concatenate([words, words.byteswap()]))


def in_sorted(values, words):
    """Whether every value is one of the sorted ``words``."""
    found = words[np.minimum(np.searchsorted(words, values), len(words) - 1)]
    return bool(np.all(found == values))


def check_loaded(result, data, from_file=True):
    """Finite real arrays, and (unless the data was compressed) bytes found in the file."""
    if result is None:
        return
    assert_finite_arrays(result)
    words = {}
    for key, value in result.items():
        value = np.ascontiguousarray(value)
        assert SECRET_VALUE not in value, key
        if from_file:
            size = value.dtype.itemsize
            if size not in words:
                words[size] = file_words(data, size)
            raw = value.view(f"<u{size}").reshape(-1)
            assert in_sorted(raw, words[size]), f"{key}: values not in the file"


def fuzz_case(root, name, data):
    path = root / name
    path.write_bytes(bytes(data))
    return read_or_refuse(read, path)


@settings(max_examples=60, **FUZZ)
@given(style=st.sampled_from(["keras1", "keras2"]), keep=st.floats(0, 1, exclude_max=True))
def test_truncated(files, style, keep):
    data = (files / f"{style}.h5").read_bytes()
    result = fuzz_case(files, "cut.h5", data[: int(len(data) * keep)])
    assert result is None  # HDF5 records the file's end; a shorter file is refused


@settings(max_examples=500, **FUZZ)
@given(style=st.sampled_from(["keras1", "keras2"]), flips=bit_flips())
def test_bit_flips(files, style, flips):
    data = flip_bits((files / f"{style}.h5").read_bytes(), flips)
    result = fuzz_case(files, "flipped.h5", data)
    check_loaded(result, data)


# Crafted cases: each alters a valid file with h5py and says what the reader must do:
# "refuse" (it points outside the file or declares what the file does not hold), "any"
# (refuse or load values stored in the file), "compressed" (refuse or load finite values).

def datasets_of(f):
    found = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def layers_of(f):
    return [name for name in f if isinstance(f[name], h5py.Group)]


def replace(f, name, make):
    """Delete ``name`` and let ``make(parent, basename, old_values)`` put something there."""
    old = f[name][()] if isinstance(f[name], h5py.Dataset) else None
    parent, _, base = name.rpartition("/")
    del f[name]
    make(f[parent or "/"], base, old)


def soft_link(draw, f, root):
    name = draw(st.sampled_from(datasets_of(f) + layers_of(f)))
    f.move(name, "stash")
    f[name] = h5py.SoftLink("/stash")
    return "refuse"


def external_link(draw, f, root):
    name = draw(st.sampled_from(datasets_of(f) + layers_of(f)))
    target = draw(st.sampled_from(["/x", "/", "/missing"]))
    del f[name]
    f[name] = h5py.ExternalLink(str(root / "secret.h5"), target)
    return "refuse"


def external_storage(draw, f, root):
    def make(group, base, old):
        group.create_dataset(base, shape=old.shape, dtype="<f4",
                             external=[(str(root / "secret.bin"), 0, old.size * 4)])
    replace(f, draw(st.sampled_from(datasets_of(f))), make)
    return "refuse"


def virtual(draw, f, root):
    def make(group, base, old):
        layout = h5py.VirtualLayout(shape=old.shape, dtype="<f4")
        layout[...] = h5py.VirtualSource(str(root / "secret.h5"), "x", shape=old.shape)
        group.create_virtual_dataset(base, layout, fillvalue=SECRET_VALUE)
    replace(f, draw(st.sampled_from(datasets_of(f))), make)
    return "refuse"


def unwritten(draw, f, root):
    """A dataset declaring 2**20 to 2**30 values of which at most one chunk is stored."""
    leading = tuple(draw(st.lists(st.sampled_from([1, 7, 64]), max_size=2)))
    total = 1 << draw(st.integers(20, 30))  # far more than the ~20 kB file holds
    shape = leading + (max(1, total // int(np.prod(leading))),)
    chunks = draw(st.sampled_from([None, "first", "gzip-first"]))

    def make(group, base, old):
        options = {}
        if chunks:
            options["chunks"] = tuple(min(s, 64) for s in shape)
        if chunks == "gzip-first":
            options["compression"] = "gzip"
        dset = group.create_dataset(base, shape=shape, dtype="<f4", **options)
        if chunks:  # one chunk written, the rest left to the fill value
            dset[tuple(slice(0, c) for c in options["chunks"])] = 1.0
    replace(f, draw(st.sampled_from(datasets_of(f))), make)
    return "refuse"


REFUSED_DTYPES = ["S8", "vlen-str", "compound", "enum", "bool", "vlen-f4", "ref", "c8"]
READ_DTYPES = ["<i4", "<u2", ">f4", "<f2", "<f8", "i1"]


def dtype(draw, f, root):
    kind = draw(st.sampled_from(REFUSED_DTYPES + READ_DTYPES))

    def make(group, base, old):
        n = old.size
        if kind in READ_DTYPES or kind == "c8":
            group.create_dataset(base, data=old.astype(kind).reshape(old.shape))
        elif kind == "S8":
            group.create_dataset(base, data=np.array([b"w"] * n).reshape(old.shape))
        elif kind == "vlen-str":
            group.create_dataset(base, data=["w"] * n, dtype=h5py.string_dtype())
        elif kind == "compound":
            group.create_dataset(base, data=np.zeros(n, [("x", "<f4"), ("y", "<i2")]))
        elif kind == "enum":
            group.create_dataset(base, data=np.ones(n, "i1"),
                                 dtype=h5py.enum_dtype({"ON": 1}, basetype="i1"))
        elif kind == "bool":
            group.create_dataset(base, data=np.ones(n, bool))
        elif kind == "vlen-f4":
            dset = group.create_dataset(base, shape=(n,), dtype=h5py.vlen_dtype(np.float32))
            dset[0] = np.full(3, SECRET_VALUE, np.float32)
        else:
            group.create_dataset(base, data=[group.ref] * n, dtype=h5py.ref_dtype)
    replace(f, draw(st.sampled_from(datasets_of(f))), make)
    return "refuse" if kind in REFUSED_DTYPES else "any"


def shape(draw, f, root):
    dims = tuple(draw(st.lists(st.integers(0, 5), max_size=5)))

    def make(group, base, old):
        group.create_dataset(base, data=fuzz_values(dims, np.random.default_rng(len(dims))))
    replace(f, draw(st.sampled_from(datasets_of(f))), make)
    return "any"


def filters(draw, f, root):
    options = draw(st.sampled_from([dict(compression="gzip"), dict(compression="lzf"),
                                    dict(shuffle=True, fletcher32=True),
                                    dict(compression="gzip", shuffle=True),
                                    dict(scaleoffset=3), dict(scaleoffset=0)]))

    def make(group, base, old):
        group.create_dataset(base, data=old, chunks=True, **options)
    replace(f, draw(st.sampled_from(datasets_of(f))), make)
    return "compressed"


NAME_TEXT = st.one_of(st.sampled_from(["block1_conv1", "fc1", "block1_conv1/block1_conv1_W_1:0",
                                       "/", ".", "..", "", "//fc1", "stash", "x" * 300]),
                      st.text(alphabet="ab/.:_\né", max_size=12))


def attribute(draw, f, root):
    owner = draw(st.sampled_from(["/"] + layers_of(f)))
    key = draw(st.sampled_from(["layer_names", "weight_names"]))
    value = draw(st.one_of(
        st.lists(NAME_TEXT, max_size=6).map(lambda v: np.array(v, dtype=h5py.string_dtype())),
        st.lists(NAME_TEXT.map(lambda t: t.encode("utf8")[:20]), max_size=6).map(
            lambda v: np.array(v, dtype="S20")),
        st.just(np.arange(4)), st.just(np.array([[b"fc1"], [b"fc1"]])),
        st.just(np.float32(1.5)), st.just(np.array([], dtype="S1"))))
    f[owner].attrs[key] = value
    return "any"


def hard_link_loop(draw, f, root):
    """A layer without weight_names (so its datasets are searched) that contains itself."""
    layer = draw(st.sampled_from(layers_of(f)))
    del f[layer].attrs["weight_names"]
    f[layer]["loop"] = f[layer]
    return "any"


def whole_model(draw, f, root):
    """Everything under model_weights, as a saved whole model has it, or a link to it."""
    f.create_group("stash")
    for name in list(f):
        if name != "stash":
            f.move(name, f"stash/{name}")
    for key, value in f.attrs.items():
        f["stash"].attrs[key] = value
    how = draw(st.sampled_from(["group", "soft", "external"]))
    if how == "group":
        f.move("stash", "model_weights")
        return "any"
    f["model_weights"] = (h5py.SoftLink("/stash") if how == "soft"
                          else h5py.ExternalLink(str(root / "secret.h5"), "/"))
    return "refuse"


def named_datatype(draw, f, root):
    replace(f, draw(st.sampled_from(datasets_of(f))),
            lambda group, base, old: group.__setitem__(base, np.dtype("<f4")))
    return "refuse"


CRAFTED = [soft_link, external_link, external_storage, virtual, unwritten, dtype, shape,
           filters, attribute, hard_link_loop, whole_model, named_datatype]


@settings(max_examples=300, **FUZZ)
@given(style=st.sampled_from(["keras1", "keras2"]), mutation=st.sampled_from(CRAFTED),
       data=st.data())
def test_crafted(files, style, mutation, data):
    path = files / "crafted.h5"
    path.write_bytes((files / f"{style}.h5").read_bytes())
    with h5py.File(path, "a") as f:
        expect = mutation(data.draw, f, files)
    result = read_or_refuse(read, path)
    if expect == "refuse":
        assert result is None, f"{mutation.__name__}: loaded {sorted(result)}"
    check_loaded(result, path.read_bytes(), from_file=expect != "compressed")
