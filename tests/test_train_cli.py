"""The demo/train/evaluate/predict command line: every number range-checked, one-line errors."""
import numpy as np
import pytest

from minifcn.cli import main
from minifcn.errors import UsageError
from minifcn.train import TrainConfig

# (option, value) pairs that make no sense, from what each setting means: a rate, a size or a
# count is positive; a probability, momentum or fraction lies in [0, 1) or [0, 1]; a number of
# iterations or minutes that may be 0 ("never", "no limit") is not negative; nothing is NaN;
# width and pad stay within what a model file may hold, or the run's model.npz could not be
# loaded again; a time budget past a million minutes is no budget.
BAD_TRAIN_VALUES = [
    ("width", "0"), ("width", "-0.5"), ("width", "nan"), ("width", "1e308"),
    ("pad", "-1"), ("pad", "1.5"), ("pad", "600"),
    ("dropout", "-0.1"), ("dropout", "1"), ("dropout", "nan"),
    ("image_size", "-1"),
    ("batch_size", "0"), ("batch_size", "-2"),
    ("lr", "0"), ("lr", "-0.01"), ("lr", "nan"), ("lr", "inf"),
    ("momentum", "-0.1"), ("momentum", "1"), ("momentum", "1.5"),
    ("weight_decay", "-0.0001"), ("weight_decay", "nan"),
    ("warmup", "-1"),
    ("step_size", "-1"),
    ("gamma", "0"), ("gamma", "1.5"), ("gamma", "-0.1"),
    ("iterations", "0"), ("iterations", "-5"),
    ("schedule_iterations", "-1"),
    ("cooldown", "-0.1"), ("cooldown", "1.5"), ("cooldown", "nan"),
    ("minutes", "-1"), ("minutes", "nan"), ("minutes", "1e308"),
    ("val_every", "-1"),
    ("val_images", "0"),
    ("checkpoint_every", "-1"),
    ("seed", "-1"), ("seed", "0.5"),
    ("score_init_std", "-0.1"), ("score_init_std", "nan"),
    ("variant", "fcn64s"), ("schedule", "cosine"), ("reduction", "max"),
]


def option(name):
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize("name,value", BAD_TRAIN_VALUES)
def test_train_refuses_a_nonsensical_number_naming_the_option(name, value, tmp_path, capsys):
    # a run that would end at once if the value were taken, so a missed check fails quickly
    quick = ["train", "--preset", "quick", "--out", str(tmp_path), "--iterations", "1", "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main(quick + [option(name), value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert option(name) in err and ("expected" in err or "invalid choice" in err)


def test_settings_that_disagree_are_refused_naming_the_option(tmp_path, capsys):
    # --pad 10 is a fine integer, but FCN-8s' last crop needs 69
    assert main(["train", "--preset", "quick", "--out", str(tmp_path), "--pad", "10", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pad" in err and "69" in err
    assert main(["train", "--preset", "quick", "--out", str(tmp_path), "--schedule", "step", "--quiet"]) == 1
    assert "--step-size" in capsys.readouterr().err


def python_value(name, text):
    """The value a Python caller would pass: an int where it parses as one, else a float."""
    if name in ("variant", "schedule", "reduction"):
        return text
    try:
        return int(text)
    except ValueError:
        return float(text)


@pytest.mark.parametrize("name,value", BAD_TRAIN_VALUES)
def test_train_config_refuses_what_the_command_line_refuses(name, value):
    with pytest.raises(UsageError, match=f"setting {name} "):
        TrainConfig(**{name: python_value(name, value)})


def test_train_config_takes_sensible_values():
    config = TrainConfig(width=1, pad=69, dropout=0, lr=1e-10, momentum=0.99, cooldown=1, minutes=0,
                         val_every=0, checkpoint_every=0, image_size=64, schedule="step", step_size=10)
    assert config.replace(variant="fcn32s", pad=81).pad == 81
    with pytest.raises(UsageError, match="81"):
        config.replace(variant="fcn32s")  # pad 69 is too small for FCN-32s
    with pytest.raises(UsageError, match="synthetic"):
        config.replace(image_size=0)  # whole images: datasets only


@pytest.mark.parametrize("command,name,value", [
    ("demo", "--minutes", "0"), ("demo", "--minutes", "-2"), ("demo", "--minutes", "nan"),
    ("demo", "--minutes", "1e308"),
    ("evaluate", "--images", "0"), ("evaluate", "--images", "-3"),
    ("evaluate", "--image-size", "0"), ("evaluate", "--image-size", "-64"),
])
def test_demo_and_evaluate_refuse_nonsensical_numbers(command, name, value, tmp_path, capsys):
    # --quick and two images: a value that slipped through would end the command at once
    base = ["demo", "--quick", "--out", str(tmp_path)] if command == "demo" else ["evaluate", "--images", "2"]
    with pytest.raises(SystemExit) as exit_info:
        main(base + [name, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and name in err and "expected" in err


def test_the_demo_api_refuses_a_zero_time_budget(tmp_path):
    from minifcn.train.demo import run_demo

    with pytest.raises(UsageError, match="minutes"):
        run_demo(0, tmp_path, quick=True)  # quick: a check that slipped would cost seconds


@pytest.mark.parametrize("argv,names", [
    (["train", "--resume", "--out", "{tmp}/nothing-here"], ["nothing-here", "no checkpoint.npz"]),
    (["train", "--preset", "quick", "--init", "{tmp}/missing.npz", "--out", "{tmp}/run"], ["missing.npz"]),
    (["train", "--preset", "quick", "--lr", "1000", "--warmup", "0", "--out", "{tmp}/run"],
     ["diverged", "--lr"]),
    (["evaluate", "--weights", "{tmp}/missing.npz"], ["missing.npz"]),
    (["predict", "{tmp}/missing.png"], ["missing.png"]),
])
def test_user_errors_are_one_line_from_main_and_status_1(argv, names, tmp_path, capsys):
    with np.errstate(over="ignore", invalid="ignore"):  # the diverging run overflows, as it should
        assert main([a.format(tmp=tmp_path) for a in argv] + (["--quiet"] if argv[0] == "train" else [])) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"minifcn {argv[0]}: error: ") and err.count("\n") == 1
    assert all(name in err for name in names) and "Traceback" not in err
