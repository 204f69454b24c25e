"""``minifcn predict`` never writes two inputs' results to one name, nor over an input."""
import numpy as np
from PIL import Image

from minifcn.cli import main
from minifcn.train.predict import output_names


def test_output_names_follow_the_documented_rule():
    assert output_names(["a/cat.png", "b/dog.png"]) == ["cat", "dog"]
    assert output_names(["a/cat.png", "b/cat.png", "c/cat.jpg"]) == ["cat", "cat-2", "cat-3"]
    # an input called cat-2 keeps its own name; the second cat takes the next free one
    assert output_names(["a/cat.png", "b/cat.png", "cat-2.png"]) == ["cat", "cat-3", "cat-2"]
    assert output_names(["Cat.png", "x/cat.png"]) == ["Cat", "cat-2"]  # apart on any file system


def test_predict_writes_inputs_with_the_same_name_apart(tmp_path, capsys):
    sizes = {"a": (60, 58), "b": (70, 64), "c": (65, 61)}  # (width, height): tells them apart
    paths = []
    for folder, size in sizes.items():
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / ("cat.jpg" if folder == "c" else "cat.png"))
        Image.fromarray(np.zeros(size[::-1] + (3,), np.uint8)).save(paths[-1])
    out = tmp_path / "pred"
    assert main(["predict", *map(str, paths), "--out", str(out)]) == 0
    for name, size in zip(["cat", "cat-2", "cat-3"], sizes.values()):
        assert Image.open(out / f"{name}_mask.png").size == size
        assert Image.open(out / f"{name}_overlay.png").size == size
    assert len(list(out.iterdir())) == 6
    printed = capsys.readouterr().out
    assert all(str(p) in printed for p in paths)


def test_predict_refuses_to_overwrite_one_of_its_inputs(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    out = tmp_path / "pred"
    out.mkdir()
    other = out / "x_mask.png"  # the name x.png's mask would get
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(other)
    before = other.read_bytes()
    assert main(["predict", str(image), str(other), "--out", str(out)]) == 1
    assert "x_mask.png" in capsys.readouterr().err
    assert other.read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["x_mask.png"]

