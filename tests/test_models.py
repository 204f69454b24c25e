"""FCN-32s/16s/8s: derived crop offsets, shapes for every input size, state dicts, errors."""
import numpy as np
import pytest

import minifcn
from minifcn.models import (MODELS, FCN8s, FCN8sAtOnce, FCN16s, FCN32s, crop_offsets, load_model,
                            network_specs, save_model)
from minifcn.models.describe import blob_rows, describe
from minifcn.models.gradcheck_cases import narrow_case

NARROW = dict(num_classes=3, width=1 / 64)


def test_importable_from_the_package():
    assert minifcn.FCN8s is FCN8s and minifcn.FCN16s is FCN16s and minifcn.FCN32s is FCN32s


@pytest.mark.parametrize("variant,expected", [
    ("fcn32s", {"score": 19}),
    ("fcn16s", {"score_pool4c": 5, "score": 27}),
    ("fcn8s", {"score_pool4c": 5, "score_pool3c": 9, "score": 31}),
    ("fcn8s-atonce", {"score_pool4c": 5, "score_pool3c": 9, "score": 31}),
])
def test_crop_offsets_are_derived_from_coordinate_maps(variant, expected):
    # the offsets are not typed into the code: they come out of composing the layer maps
    assert crop_offsets(network_specs(variant)) == expected
    assert MODELS[variant](**NARROW).offsets == expected


def test_smaller_padding_shifts_only_the_final_crop():
    assert FCN8s(pad=69, **NARROW).offsets == {"score_pool4c": 5, "score_pool3c": 9, "score": 0}
    assert FCN32s(pad=81, **NARROW).offsets == {"score": 0}
    with pytest.raises(ValueError, match="offset -1"):
        FCN8s(pad=68, **NARROW)


def test_shape_table_for_500_matches_the_reference():
    # REFERENCE.md section 1, numbers written out independently of the code
    expected = {"conv1_1": 698, "pool1": 349, "pool2": 175, "pool3": 88, "pool4": 44, "pool5": 22,
                "fc6": 16, "fc7": 16, "score_fr": 16, "upscore2": 34, "score_pool4": 44,
                "score_pool4c": 34, "upscore_pool4": 70, "score_pool3": 88, "score_pool3c": 70,
                "upscore8": 568, "score": 500}
    rows = {r["name"]: r for r in blob_rows("fcn8s", 500, 500)}
    for name, size in expected.items():
        assert rows[name]["shape"][1:] == (size, size), name
    assert rows["conv1_1"]["shape"][0] == 64 and rows["fc6"]["shape"][0] == 4096
    assert rows["score_pool4c"]["offset"] == 5 and rows["score"]["offset"] == 31
    total_flops = sum(r["flops"] for r in rows.values())
    assert 355e9 < total_flops < 370e9  # ~363 GFLOP, as measured elsewhere for FCN-8s at 500x500
    text = describe("fcn8s", 500, 500)
    assert "21 x 568 x 568" in text and "134,489,759 parameters" in text
    # reach, by hand: conv1_1's windows 98..599 of 698 touch the image (pad 100); conv1_2
    # reads one more on each side, and its zero padding makes frames of its edge rows/cols
    assert rows["conv1_1"]["reach"] == pytest.approx(502 ** 2 / 698 ** 2)
    assert rows["conv1_2"]["reach"] == pytest.approx((698 ** 2 - 696 ** 2 + 504 ** 2) / 698 ** 2)
    assert rows["upscore8"]["reach"] is None and rows["data"]["reach"] == 1.0
    assert "52%" in text.splitlines()[4]  # conv1_1's row


@pytest.mark.parametrize("variant", list(MODELS))
def test_describe_agrees_with_a_real_forward(variant):
    model = MODELS[variant](**NARROW).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 37, 29)).astype(np.float32)
    model(x)
    for row in blob_rows(variant, 37, 29, num_classes=3, net_width=1 / 64):
        if row["name"] in model.layers:
            assert model.layers[row["name"]].output_shape[1:] == row["shape"], row["name"]


SIZES = [(1, 1), (2, 3), (31, 33), (32, 32), (47, 17), (224, 224), (500, 375)]


@pytest.mark.parametrize("hw", SIZES, ids=str)
def test_fcn8s_output_matches_input_size(hw):
    model = FCN8s(**NARROW)
    x = np.random.default_rng(1).standard_normal((1, 3) + hw).astype(np.float32)
    scores = model(x)
    assert scores.shape == (1, 3) + hw and scores.dtype == np.float32
    dx = model.backward(np.ones_like(scores))
    assert dx.shape == x.shape


@pytest.mark.parametrize("cls", [FCN32s, FCN16s, FCN8sAtOnce])
@pytest.mark.parametrize("hw", [(1, 1), (31, 33), (70, 45)], ids=str)
def test_other_variants_for_every_size(cls, hw):
    model = cls(**NARROW)
    scores = model(np.zeros((2, 3) + hw, np.float32))
    assert scores.shape == (2, 3) + hw


def test_every_size_from_1_to_70_keeps_crops_in_bounds():
    for variant in MODELS:
        specs = network_specs(variant)
        for size in range(1, 71):
            rows = blob_rows(variant, size, size + 3)
            assert rows[-1]["shape"][1:] == (size, size + 3)
        assert specs[-1].name == "score"


# the engine on every variant; the book (six times slower on these padded inputs: its conv1_1
# unfolds all of its 209x211 padding) on FCN-8s, which has every kind of layer but the scale,
# along a random direction per array (a wrong entry anywhere shows there) without the sampled
# entries: it equals the engine's to 1e-10 (test_engine_equivalence.py)
@pytest.mark.parametrize("variant,ops,samples", [(v, "engine", 2) for v in MODELS] + [("fcn8s", "book", 0)])
def test_whole_network_gradient_check(variant, ops, samples):
    # every parameter (upsampling made learnable) and the input, float64, through the loss
    name, config, errors = narrow_case(variant, ops=ops, num_samples=samples)()
    worst = max(errors.values())
    assert worst < 1e-6, (config, errors)


def test_backward_fills_every_gradient_and_freezes_upsampling():
    model = FCN8s(**NARROW)
    x = np.random.default_rng(2).standard_normal((2, 3, 20, 23)).astype(np.float32)
    model.backward(np.ones_like(model(x)))
    for name, p in model.named_parameters():
        if name.startswith("upscore"):
            assert not p.requires_grad and p.grad is None
        else:
            assert p.grad is not None and p.grad.shape == p.shape, name
    learnable = FCN8s(learn_upsampling=True, **NARROW)
    learnable.backward(np.ones_like(learnable(x)))
    assert learnable.upscore8.weight.grad.shape == (3, 3, 16, 16)


def test_initialisation_follows_the_reference():
    model = FCN8s(**NARROW)
    for name in ["score_fr", "score_pool4", "score_pool3"]:
        assert not model.layers[name].weight.data.any()
    up = model.upscore2.weight.data
    np.testing.assert_allclose(up[0, 0, 0], [0.0625, 0.1875, 0.1875, 0.0625])  # 0.25 * tent
    assert not up[0, 1].any()  # off-diagonal class pairs are zero
    assert up.shape == (3, 3, 4, 4) and model.upscore8.weight.shape == (3, 3, 16, 16)


def test_train_and_eval_modes():
    model = FCN8s(**NARROW)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    # a trained-looking score layer, so that dropout changes the output
    model.score_fr.weight.data[:] = 0.1
    a, b = model.train()(x), model(x)
    assert not np.array_equal(a, b)  # new dropout masks each forward
    c, d = model.eval()(x), model(x)
    np.testing.assert_array_equal(c, d)
    assert model.backward(np.ones_like(d)).shape == x.shape  # backward after an eval forward


def test_inference_keeps_no_caches_and_computes_the_same_scores():
    model = FCN8s(**NARROW).eval()
    x = np.random.default_rng(4).standard_normal((2, 3, 21, 17)).astype(np.float32)
    expected = model(x)  # a normal forward: every layer keeps its cache
    assert all(layer.cache is not None for layer in model.layers.values())
    with model.inference() as same:
        assert same is model
        got = model(x)
        assert all(layer.cache is None for layer in model.layers.values())  # dropped on entry too
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(RuntimeError, match="score: backward called before forward .*inference"):
        model.backward(np.ones_like(got))
    # the block leaves the layers as it found them, even when it ends in an error
    with pytest.raises(ZeroDivisionError), model.inference():
        1 / 0
    assert all(layer.keep_cache for layer in model.layers.values())
    np.testing.assert_array_equal(model(x), expected)
    assert model.backward(np.ones_like(got)).shape == x.shape


def test_named_parameters_are_state_dict_keys():
    model = FCN8sAtOnce(**NARROW)
    names = [n for n, _ in model.named_parameters()]
    assert names == list(model.state_dict())
    assert "conv1_1.weight" in names and "upscore8.weight" in names and "upscore8.bias" not in names
    assert model.state_dict()["fc6.weight"].shape == (64, 8, 7, 7)


def test_state_dict_round_trip_and_file(tmp_path):
    model = FCN16s(num_classes=4, width=1 / 32, seed=5).eval()
    model.score_fr.weight.data += 0.01
    x = np.random.default_rng(4).standard_normal((1, 3, 25, 19)).astype(np.float32)
    path = save_model(model, tmp_path / "m.npz", extra={"note": "test"})
    loaded = load_model(path).eval()
    assert isinstance(loaded, FCN16s) and loaded.num_classes == 4 and loaded.width == 1 / 32
    np.testing.assert_array_equal(loaded(x), model(x))
    other = FCN16s(num_classes=4, width=1 / 32, seed=9)
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(other.eval()(x), model(x))


def test_strict_load_reports_everything_and_loads_nothing():
    model = FCN8s(**NARROW)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = FCN32s(num_classes=3, width=1 / 32).state_dict()
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    text = str(err.value)
    assert "missing keys: " in text and "upscore2.weight" in text  # FCN-8s layers absent
    assert "unexpected keys: upscore.weight" in text
    assert "conv1_1.weight: expected (1, 3, 3, 3), found (2, 3, 3, 3)" in text
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_model_refuses_a_mismatched_file(tmp_path):
    path = save_model(FCN8s(**NARROW), tmp_path / "a.npz")
    with pytest.raises(ValueError, match="a.npz"):
        load_model(path, width=1 / 32)


def test_staged_copy_32s_to_16s_to_8s():
    fcn32 = FCN32s(num_classes=3, width=1 / 64, seed=1)
    fcn32.conv3_1.weight.data += 1.0
    fcn16 = FCN16s(num_classes=3, width=1 / 64, seed=2)
    copied = fcn16.copy_params(fcn32)
    assert "conv3_1.weight" in copied and "score_fr.bias" in copied and "upscore.weight" not in copied
    np.testing.assert_array_equal(fcn16.conv3_1.weight.data, fcn32.conv3_1.weight.data)
    fcn8 = FCN8s(num_classes=3, width=1 / 64, seed=3)
    assert "score_pool4.weight" in fcn8.copy_params(fcn16)


@pytest.mark.parametrize("x,error,match", [
    (np.zeros((1, 4, 8, 8), np.float32), ValueError, r"3-channel.*\(1, 4, 8, 8\)"),
    (np.zeros((8, 8), np.float32), ValueError, r"FCN8s: expected a 4-D input.*\(8, 8\)"),
    (np.zeros((1, 1, 3, 8, 8), np.float32), ValueError, r"4-D"),
    (np.zeros((1, 3, 8, 8), np.uint8), TypeError, r"floating point"),
    (np.zeros((1, 3, 8, 8), np.float64), TypeError, r"float64 differs from the weights' float32"),
])
def test_bad_input(x, error, match):
    with pytest.raises(error, match=match):
        FCN8s(**NARROW)(x)


def test_models_are_built_with_their_op_set():
    from minifcn import engine
    from minifcn import ops as book

    assert all(layer.ops is book for layer in FCN8s(**NARROW).layers.values())  # the default
    model = FCN16s(ops="engine", **NARROW)
    assert model.ops == "engine" and all(layer.ops is engine for layer in model.layers.values())
    with pytest.raises(ValueError, match="ops must be 'book'.*'engine'.*'fast'"):
        FCN32s(ops="fast", **NARROW)


def test_load_model_builds_the_op_set_asked_for(tmp_path):
    from minifcn import engine

    path = save_model(FCN8s(**NARROW), tmp_path / "m.npz")
    assert load_model(path).ops == "book"
    loaded = load_model(path, ops="engine")
    assert loaded.ops == "engine" and loaded.conv1_1.ops is engine


def test_describe_routes_come_from_each_op_sets_dispatch(capsys):
    from minifcn.cli import main
    from minifcn.engine.stride1 import stride1_backward
    from minifcn.models.describe import route_rows

    rows = {r["name"]: r for r in route_rows("fcn8s", num_classes=3, net_width=1 / 64)}
    assert rows["conv1_2"]["book"][1].__qualname__ == "conv2d_backward"
    assert rows["conv1_2"]["engine"][1] is stride1_backward  # not widening: dout's columns
    assert rows["conv2_1"]["engine"][1].__qualname__ == "banded_backward"  # widening: col2im
    assert rows["upscore8"]["engine"][0].__qualname__ == "separable_upsample_forward"
    assert rows["score"]["engine"] == rows["score"]["book"]  # the engine crops with the book
    assert main(["describe", "fcn32s", "--routes", "--width", "0.015625", "--num-classes", "3"]) == 0
    out = capsys.readouterr().out
    assert "upscore   conv_transpose2d_forward" in out
    assert "engine.separable.separable_upsample_forward" in out
    assert "engine.stride1.stride1_backward" in out
    assert main(["describe", "fcn8s", "--routes"]) == 0  # full width: conv3_2 on takes Winograd
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    winograd = [r[0] for r in rows if "engine.conv.winograd_forward" in r]
    assert winograd == ["conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
                        "conv5_1", "conv5_2", "conv5_3"]


def test_describe_command(capsys):
    from minifcn.cli import main

    assert main(["describe", "fcn8s", "--size", "500x500"]) == 0
    out = capsys.readouterr().out
    assert "upscore8      upscore  21 x 568 x 568" in out and "363.1 GFLOP" in out
    assert main(["describe", "fcn32s", "--size", "31x33", "--num-classes", "5", "--width", "0.0625"]) == 0
    assert "score         crop     5 x 31 x 33" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # a usage error, caught by the parser
        main(["describe", "fcn8s", "--size", "big"])
    assert exit_info.value.code == 2
    assert "argument --size: expected HxW such as 500x500, got 'big'" in capsys.readouterr().err
