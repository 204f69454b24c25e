"""The backend module: device choice, clear errors, and CuPy-compatibility of every xp call."""
import ast
import pathlib
import sys

import numpy as np
import pytest

import minifcn
from minifcn import backend
from minifcn.backend import DeviceError, get_array_module, resolve_device, to_host

PACKAGE = pathlib.Path(minifcn.__file__).parent


def test_default_device_is_cpu(monkeypatch):
    monkeypatch.delenv("MINIFCN_DEVICE", raising=False)
    assert resolve_device() == "cpu"
    monkeypatch.setenv("MINIFCN_DEVICE", "CPU")
    assert resolve_device() == "cpu"
    assert resolve_device("cpu") == "cpu"


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")


def test_gpu_without_cupy_says_so(monkeypatch):
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)
    with pytest.raises(DeviceError, match="CuPy is not installed"):
        resolve_device("gpu")
    monkeypatch.setenv("MINIFCN_DEVICE", "gpu")
    with pytest.raises(DeviceError, match="CuPy is not installed"):
        resolve_device()


def test_gpu_with_cupy_but_no_device_says_so(monkeypatch):
    class Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    class FakeCupy:
        cuda = type("cuda", (), {"runtime": Runtime})

    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy)
    with pytest.raises(DeviceError, match="no usable GPU"):
        resolve_device("gpu")


def test_numpy_arrays_stay_numpy():
    x = np.zeros(3)
    assert get_array_module(x, None) is np
    assert to_host(x) is x or np.shares_memory(to_host(x), x)


def test_cli_reports_missing_gpu_in_one_line(monkeypatch, capsys):
    from minifcn.cli import main

    monkeypatch.setattr(backend, "_import_cupy", lambda: None)
    assert main(["--device", "gpu", "gradcheck", "--no-models"]) == 1
    err = capsys.readouterr().err
    assert "CuPy is not installed" in err and "Traceback" not in err


def test_nothing_but_the_backend_imports_cupy():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "backend.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] in ("cupy", "cupyx", "torch") for n in names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == [], offenders


def _xp_attribute_chains(folder=PACKAGE):
    """Every ``xp.a.b`` chain used anywhere in the array code under ``folder``."""
    chains = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                parts = []
                cur = node
                while isinstance(cur, ast.Attribute):
                    parts.append(cur.attr)
                    cur = cur.value
                if isinstance(cur, ast.Name) and cur.id == "xp":
                    chains.add(".".join(reversed(parts)))
    # keep only maximal chains (xp.random.default_rng, not also xp.random)
    return sorted(c for c in chains if not any(o != c and o.startswith(c + ".") for o in chains))


def test_both_op_sets_call_array_functions_through_xp():
    # what the CuPy check below reads: the book and the engine, each on its own
    assert {"pad", "zeros", "empty", "full", "where"} <= set(_xp_attribute_chains(PACKAGE / "ops"))
    assert {"zeros", "empty", "matmul", "maximum", "ElementwiseKernel"} <= set(
        _xp_attribute_chains(PACKAGE / "engine"))


@pytest.mark.parametrize("folder", ["ops", "engine", "."])
def test_every_xp_function_exists_in_cupy(folder):
    cupy = pytest.importorskip("cupy")  # installs and imports without a GPU
    chains = _xp_attribute_chains(PACKAGE / folder)
    missing = []
    for chain in chains:
        obj = cupy
        for part in chain.split("."):
            if not hasattr(obj, part):
                missing.append(chain)
                break
            obj = getattr(obj, part)
    assert missing == [], f"used as xp.<name> but absent from CuPy {cupy.__version__}: {missing}"
    assert "cupy" in sys.modules


def test_the_command_keeps_freed_memory(monkeypatch, capsys):
    from minifcn import cli

    called = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: called.append(True))
    assert cli.main(["describe", "fcn8s", "--width", "0.0625", "--size", "64x64"]) == 0
    assert called == [True]
    assert "score_fr" in capsys.readouterr().out


def test_help_lists_the_main_job_first(capsys):
    from minifcn import cli

    names = list(cli.build_parser()._subparsers._group_actions[0].choices)
    assert names[:4] == ["demo", "train", "evaluate", "predict"]
    assert set(names[4:]) == {"gradcheck", "describe", "convert", "download", "figures"}
