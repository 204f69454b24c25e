"""The skip comparison: its presets, its shipped checkpoints, and how it summarises seeds."""
import re
from pathlib import Path

import numpy as np
import pytest

from minifcn.data.synthetic import SyntheticShapes
from minifcn.engine.memory import cpu_threads
from minifcn.errors import UsageError
from minifcn.models import load_model
from minifcn.train import evaluate, preset
from minifcn.train import experiment
from minifcn.train.demo import TEST_SEED

ASSETS = Path(experiment.__file__).resolve().parents[1] / "assets"


def test_the_three_presets_differ_in_the_variant_alone():
    configs = {v: preset(f"skips-{v}") for v in experiment.VARIANTS}
    for variant, config in configs.items():
        assert config.variant == variant
        assert config.pad == 81  # FCN-32s' least padding (REFERENCE.md: 81, 73, 69)
        assert config.width == 1 / 16 and config.image_size == 96 and config.init == "scratch"
    settings = [{k: v for k, v in c.to_dict().items() if k != "variant"} for c in configs.values()]
    assert settings[0] == settings[1] == settings[2]


def test_summary_is_the_mean_and_range_over_seeds():
    # uneven values: their mean is not their median
    runs = {"fcn8s": {0: {"mean_iu": 0.5, "pixel_accuracy": 0.9, "boundary_accuracy": 0.6},
                      1: {"mean_iu": 0.6, "pixel_accuracy": 0.8, "boundary_accuracy": 0.7},
                      2: {"mean_iu": 1.0, "pixel_accuracy": 1.0, "boundary_accuracy": 0.8}},
            "fcn32s": {5: {"mean_iu": 0.2, "pixel_accuracy": 0.85, "boundary_accuracy": 0.5}}}
    summary = experiment.summarise(runs)
    assert summary["fcn8s"]["mean_iu"] == pytest.approx({"mean": 0.7, "min": 0.5, "max": 1.0, "seeds": 3})
    assert summary["fcn8s"]["pixel_accuracy"] == pytest.approx({"mean": 0.9, "min": 0.8, "max": 1.0, "seeds": 3})
    assert summary["fcn32s"]["boundary_accuracy"] == {"mean": 0.5, "min": 0.5, "max": 0.5, "seeds": 1}
    lines = experiment.table(summary).splitlines()
    assert lines[2] == "| FCN-8s | 3 | 70.0 (50.0-100.0) | 90.0 (80.0-100.0) | 70.0 (60.0-80.0) |"
    assert lines[3] == "| FCN-32s | 1 | 20.0 (20.0-20.0) | 85.0 (85.0-85.0) | 50.0 (50.0-50.0) |"


@pytest.mark.parametrize("text, seeds", [("0,1,2", [0, 1, 2]), ("7", [7])])
def test_seed_list(text, seeds):
    assert experiment.seed_list(text) == seeds


@pytest.mark.parametrize("text", ["", "0,,1", "-1", "1,1", "a"])
def test_seed_list_refuses(text):
    with pytest.raises(Exception, match="distinct seeds"):
        experiment.seed_list(text)


def test_a_finished_run_is_reused_and_another_one_refused(tmp_path, monkeypatch):
    config = preset("quick").replace(iterations=3, val_every=0, checkpoint_every=0)
    model, summary = experiment.train_or_reuse(config, tmp_path, progress=False)
    assert summary["iterations"] == 3

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    with monkeypatch.context() as m:
        m.setattr(experiment, "Trainer", no_training)
        again, reused = experiment.train_or_reuse(config, tmp_path, progress=False)
    assert reused == summary
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        assert np.array_equal(a.data, b.data), name
    with pytest.raises(UsageError):  # other settings: the folder holds another run
        experiment.train_or_reuse(config.replace(seed=1), tmp_path, progress=False)


# What each .md says the first 20 held-out test images score; measured once when the
# checkpoints were made, read back from the .md so the text and this test cannot part.
SCORED = re.compile(r"On the first 20 of those images: mean IU ([\d.]+) %, boundary accuracy "
                    r"([\d.]+) %")


@pytest.mark.parametrize("variant", experiment.VARIANTS)
def test_shipped_checkpoint_scores_what_its_note_says(variant):
    note = (ASSETS / f"{variant}_skips.md").read_text()
    found = SCORED.search(" ".join(note.split()))
    assert found, f"{variant}_skips.md: no line 'On the first 20 of those images: ...'"
    mean_iu, band = (float(v) / 100 for v in found.groups())
    model = load_model(experiment.shipped_skips_path(variant), ops="engine")
    assert model.variant == variant and model.pad == 81
    test = SyntheticShapes(20, 96, seed=TEST_SEED)
    with cpu_threads(1):  # as they were measured; a net this narrow gains nothing from more
        scores = evaluate(model, test)["mean_iu"], experiment.boundary_accuracy(model, test)
    # 0.2 points: the engine may sum in another order on another machine, which can flip
    # the argmax of a few pixels whose two best scores tie to float precision
    assert scores == pytest.approx((mean_iu, band), abs=0.002)
