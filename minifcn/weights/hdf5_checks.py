"""Read an HDF5 weight file without trusting it (used by :mod:`.keras`).

HDF5 can do much more than hold arrays, and some of it reaches outside the file: a dataset
may keep its bytes in *external storage* (any local file, named in the dataset's header),
a *virtual dataset* maps other files' datasets, a *soft link* points anywhere in the file and
an *external link* into another file. A downloaded ``.h5`` that used any of these could make
``minifcn convert`` copy a local secret into the weights it writes. A Keras weight file
needs none of them: groups joined by hard links, and datasets of plain numbers stored in the
file itself. So that is all that is accepted, and each check runs *before* h5py is asked to
follow a link or read data:

* links: every path component must be a hard link (``group.get(name, getlink=True)``, which
  only looks at the link itself), so h5py never resolves a soft or external link;
* datasets: no external storage, not virtual, a real number dtype (IEEE float, integer),
  at most 4 dimensions;
* size: what the dataset declares must be what the file holds. Uncompressed data must be
  stored in full inside the file (so reading it allocates at most the file's size, and no
  "fill value" stands in for missing bytes); compressed data may only use the standard
  lossless filters, and may inflate no more than deflate can (1032:1) and to no more than
  VGG16's largest array. No chunk may be larger than its dataset (HDF5 allocates whole
  chunks when it decompresses one).
"""
from __future__ import annotations

import numpy as np

from .layout import FC6_KERNEL, FC_WIDTH, POOL5_CHANNELS, WeightFileError

MAX_RANK = 4            # conv kernels (kh, kw, in, out); nothing in VGG16 has more
MAX_NAMES = 4096        # entries of a layer_names / weight_names attribute (VGG16: 23 layers)
MAX_DEPTH = 4           # deepest dataset below a layer group: layer/sub/.../name
MAX_LINKS = 10_000      # links visited when a layer has no weight_names (bounds hard-link loops)
# Filters HDF5/h5py apply losslessly, with the most one stored byte can inflate to.
FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}
MAX_INFLATION = 1032    # deflate's limit: 258 bytes out per 2 bits in, rounded up
LARGEST_ARRAY = FC6_KERNEL**2 * POOL5_CHANNELS * FC_WIDTH * 8  # fc1 (25088, 4096), float64


class HDF5Checks:
    """The checks, bound to one file (its name for messages, its size for bounds)."""

    def __init__(self, h5py, path):
        self.h5py = h5py
        self.src = path.name
        self.file_size = path.stat().st_size

    def fail(self, message):
        return WeightFileError(f"{self.src}: {message}")

    def child(self, group, name):
        """``group[name]``, following only hard links, one path component at a time."""
        parts = [p for p in name.split("/") if p]
        if not parts:
            raise self.fail(f"an empty name in {group.name}")
        obj = group
        for part in parts:
            if not part.isprintable():  # it goes into messages, which are one line
                raise self.fail(f"a name {part!r:.80} in {obj.name} is not printable text")
            link = obj.get(part, getlink=True)
            where = f"{obj.name.rstrip('/')}/{part}"
            if link is None:
                raise self.fail(f"{where} named in the file does not exist")
            if isinstance(link, self.h5py.ExternalLink):
                raise self.fail(f"{where} is an external link to {link.path} in file "
                                f"{link.filename}; links out of the file are refused")
            if isinstance(link, self.h5py.SoftLink):
                raise self.fail(f"{where} is a soft link to {link.path}; a weight file's "
                                "layers and weights are stored, not linked")
            obj = obj[part]
        return obj

    def string_list(self, obj, key):
        """A list-of-strings attribute (``layer_names``, ``weight_names``), or ``[]``."""
        if key not in obj.attrs:
            return []
        attr = obj.attrs.get_id(key)  # its dtype and size, before reading any of it
        if attr.shape is None:  # HDF5's "null" dataspace: no values at all
            return []
        if self.h5py.check_string_dtype(attr.dtype) is None or len(attr.shape) > 1:
            raise self.fail(f"attribute {key} of {obj.name} has dtype {attr.dtype} and shape "
                            f"{attr.shape}; expected a list of names")
        count = (attr.shape or (1,))[0]
        if count == 0:
            return []
        stored = attr.get_storage_size()
        if count > MAX_NAMES or stored > self.file_size:
            raise self.fail(f"attribute {key} of {obj.name} declares {count} names ({stored} "
                            f"bytes); expected at most {MAX_NAMES} in a file of "
                            f"{self.file_size} bytes")
        values = np.atleast_1d(obj.attrs[key])
        return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]

    def dataset_names(self, group):
        """Paths of the datasets below ``group``, shallowest first (hard links only)."""
        found, todo, visited = [], [("", group, 0)], 0
        while todo:
            prefix, current, depth = todo.pop(0)
            for name in current:
                visited += 1
                if visited > MAX_LINKS:
                    raise self.fail(f"{group.name} holds more than {MAX_LINKS} links")
                obj = self.child(current, name)
                if isinstance(obj, self.h5py.Dataset):
                    found.append(prefix + name)
                elif isinstance(obj, self.h5py.Group) and depth < MAX_DEPTH:
                    todo.append((f"{prefix}{name}/", obj, depth + 1))
        return found

    def read(self, dset):
        """The dataset's values, once its storage, dtype and size have been checked."""
        if not isinstance(dset, self.h5py.Dataset):
            raise self.fail(f"{dset.name} is a {type(dset).__name__}; expected a dataset")
        where = f"dataset {dset.name}"
        if dset.is_virtual:
            raise self.fail(f"{where} is a virtual dataset, mapped from other files; a weight "
                            "file must hold its own data")
        if dset.external:
            files = ", ".join(str(name) for name, _, _ in dset.external)
            raise self.fail(f"{where} keeps its data in external file(s) {files}; a weight "
                            "file must hold its own data")
        self._check_dtype(dset, where)
        shape = dset.shape
        if shape is None or not 1 <= len(shape) <= MAX_RANK:
            raise self.fail(f"{where} has shape {shape}; expected 1 to {MAX_RANK} dimensions")
        self._check_size(dset, where)
        return dset[()]

    def _check_dtype(self, dset, where):
        dtype, h5t = dset.dtype, self.h5py.h5t
        if dtype.kind == "c":
            raise self.fail(f"{where} has dtype {dtype}; complex weights are not supported "
                            "(expected real numbers: float or integer)")
        if dtype.kind not in "fiu" or self.h5py.check_enum_dtype(dtype) is not None:
            raise self.fail(f"{where} holds {_kind_name(self.h5py, dtype)} (dtype {dtype}); "
                            "expected numbers (float or integer)")
        if dtype.kind == "f":
            ieee = (h5t.IEEE_F16LE, h5t.IEEE_F16BE, h5t.IEEE_F32LE, h5t.IEEE_F32BE,
                    h5t.IEEE_F64LE, h5t.IEEE_F64BE)
            stored = dset.id.get_type()
            if not any(stored.equal(t) for t in ieee):
                raise self.fail(f"{where} has a non-standard {dtype.itemsize * 8}-bit float "
                                "type; expected IEEE float16, float32 or float64")

    def _check_size(self, dset, where):
        nbytes = int(np.prod(dset.shape, dtype=object)) * dset.dtype.itemsize
        stored = dset.id.get_storage_size()
        plist = dset.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        if stored > self.file_size:
            raise self.fail(f"{where} claims {stored} stored bytes; the file has only "
                            f"{self.file_size}")
        if dset.chunks is not None and any(c > s for c, s in zip(dset.chunks, dset.shape)):
            raise self.fail(f"{where} has chunks {dset.chunks} larger than its shape "
                            f"{dset.shape}")
        if not filters:
            offset = dset.id.get_offset()  # None unless stored in one piece
            if stored < nbytes or (offset is not None and offset + nbytes > self.file_size):
                raise self.fail(f"{where} has shape {dset.shape} ({nbytes} bytes) but the file "
                                f"stores {stored} bytes of it")
            return
        unknown = [f for f in filters if f not in FILTERS]
        if unknown:
            raise self.fail(f"{where} uses HDF5 filter(s) {unknown}; expected none or "
                            f"{', '.join(FILTERS.values())}")
        if nbytes > stored * MAX_INFLATION or nbytes > LARGEST_ARRAY:
            raise self.fail(f"{where} has shape {dset.shape} ({nbytes} bytes) from {stored} "
                            "compressed bytes: more than compression can give or VGG16 holds")


def _kind_name(h5py, dtype):
    """Words for a dtype that is not a number, for the error message."""
    if h5py.check_string_dtype(dtype) is not None or dtype.kind in "SU":
        return "strings"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "variable-length sequences"
    if h5py.check_ref_dtype(dtype) is not None:
        return "object references"
    if h5py.check_enum_dtype(dtype) is not None:
        return "enumerated values"
    if dtype.names:
        return "compound records"
    if dtype.kind == "b":
        return "booleans"
    return "values that are not numbers"
