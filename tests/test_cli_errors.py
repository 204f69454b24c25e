"""The command line's error convention, run as a user runs it: ``python -m minifcn.cli``.

A user error is one line on stderr, ``minifcn <command>: error: ...`` naming the thing, and
exit status 1 (2 for a usage error that the argument parser catches); never a traceback,
unless ``--debug`` asks for one.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (arguments, exit status, what the line names)
BAD_INPUTS = [
    (["describe", "fcn8s", "--pad", "-1"], 2, "--pad"),
    (["describe", "fcn8s", "--size", "0x500"], 2, "--size"),
    (["describe", "fcn8s", "--size", "big"], 2, "--size"),
    (["describe", "fcn8s", "--num-classes", "0"], 2, "--num-classes"),
    (["describe", "fcn8s", "--width", "nan"], 2, "--width"),
    # finite but past any network a model file may hold (its channel counts would overflow)
    (["describe", "fcn8s", "--width", "1e300"], 2, "--width"),
    (["describe", "fcn8s", "--num-classes", "1" + "0" * 400], 2, "--num-classes"),
    (["convert", "{missing}", "{tmp}/out.npz", "--width", "1e308"], 2, "--width"),
    (["describe", "fcn8s", "--pad", "10"], 1, "--pad 10"),
    (["describe", "fcn8s", "--size", "5x5", "--pad", "69"], 1, "57x57"),
    (["gradcheck", "--models"], 2, "--models"),
    (["figures", "--only", "nope.png"], 2, "nope.png"),
    (["figures", "--out", "{file}"], 1, "{file}"),
    (["predict", "{file}", "--weights", "{missing}"], 1, "{missing}"),
    (["convert", "{missing}", "{tmp}/out.npz"], 1, "{missing}"),
]


def _start(args, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    names = {"file": str(tmp_path / "a_file"), "missing": str(tmp_path / "missing.npz"),
             "tmp": str(tmp_path)}
    args = [a.format(**names) for a in args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINIFCN_DEVICE="cpu")
    return subprocess.Popen([sys.executable, "-m", "minifcn.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), names


def test_bad_input_is_one_line_naming_the_thing(tmp_path):
    # all at once: each is a fresh interpreter, most of whose time is the import
    runs = []
    for k, (args, status, named) in enumerate(BAD_INPUTS):
        folder = tmp_path / str(k)
        folder.mkdir()
        runs.append((args, status, named) + _start(args, folder))
    for args, status, named, process, names in runs:
        _, err = process.communicate(timeout=120)
        lines = err.splitlines()
        command = args[0]
        assert process.returncode == status, (args, err)
        assert len(lines) == 1, (args, err)
        assert lines[0].startswith(f"minifcn {command}: error: "), (args, err)
        assert named.format(**names) in lines[0], (args, err)
        assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    process, _ = _start(["--debug", "describe", "fcn8s", "--pad", "10"], tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1].startswith("minifcn describe: error: --pad 10 is too small")


@pytest.mark.parametrize("args", [["describe", "fcn8s", "--size", "500x500"]])
def test_a_good_command_writes_nothing_on_stderr(tmp_path, args):
    process, _ = _start(args, tmp_path)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and err == "" and "upscore8" in out


def test_out_of_memory_is_one_line(monkeypatch, capsys):
    # an image, batch or width too large for the machine is the user's to change, not a bug
    import minifcn.cli as cli

    def exhausted(device):
        raise MemoryError

    monkeypatch.setattr(cli, "resolve_device", exhausted)
    assert cli.main(["describe", "fcn8s"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minifcn describe: error: out of memory")


def test_predict_names_the_image_that_is_too_small(tmp_path, capsys):
    from PIL import Image

    import minifcn.cli as cli

    small = tmp_path / "tiny.png"
    Image.new("RGB", (40, 40)).save(small)  # the shipped net (pad 69) needs 57x57
    assert cli.main(["predict", str(small), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{small}: input 40x40 is too small" in err and "57x57" in err
    assert not (tmp_path / "out" / "tiny_mask.png").exists()
