"""The house's floors: what each folder may import, and one architecture table.

Imports are read from the source (``ast``, through :mod:`test_book`'s reader), as a reader
following them meets them.
"""
import numpy as np
import pytest

from minifcn.models import FCN8s, spec
from minifcn.models.state_dict import expected_shapes, validate
from test_book import PACKAGE, internal_imports


@pytest.mark.parametrize("higher", ["minifcn.train", "minifcn.weights"])
def test_models_import_nothing_from_a_higher_floor(higher):
    files = sorted((PACKAGE / "models").glob("*.py"))
    assert len(files) >= 6  # the reader found the folder
    reached = {p.name: sorted(n for n in internal_imports(p) if n.startswith(higher)) for p in files}
    assert {name: names for name, names in reached.items() if names} == {}


def test_the_weight_contract_follows_the_layer_table(monkeypatch):
    # A made-up VGG: one conv per block, 8/16 channels, fc width 32. Had the contract
    # restated VGG16, it would still ask for 64 channels and conv1_2.
    monkeypatch.setattr(spec, "VGG_BLOCKS", ((8, 1), (16, 1), (16, 1), (16, 1), (16, 1)))
    monkeypatch.setattr(spec, "FC_CHANNELS", 32)
    assert expected_shapes("vgg16-notop") == {
        "conv1_1.weight": (8, 3, 3, 3), "conv1_1.bias": (8,),
        "conv2_1.weight": (16, 8, 3, 3), "conv2_1.bias": (16,),
        "conv3_1.weight": (16, 16, 3, 3), "conv3_1.bias": (16,),
        "conv4_1.weight": (16, 16, 3, 3), "conv4_1.bias": (16,),
        "conv5_1.weight": (16, 16, 3, 3), "conv5_1.bias": (16,),
    }
    fcn8 = expected_shapes("fcn8s", 5)
    assert fcn8["fc6.weight"] == (32, 16, 7, 7) and fcn8["score_fr.weight"] == (5, 32, 1, 1)
    # the network built from the same table holds exactly what the contract asks
    state = FCN8s(num_classes=5).state_dict()
    assert {k: tuple(np.shape(v)) for k, v in state.items()} == fcn8
    assert validate(state, "fcn8s", "made-up.npz") == {"width": 1.0, "num_classes": 5}


def test_dropout_reseed_restarts_the_masks_from_the_seed():
    from minifcn.layers import Dropout

    x = np.ones((1, 4, 8, 8))
    layer = Dropout("drop6", p=0.5, seed=3)
    first, second = layer(x), layer(x)
    assert not np.array_equal(first, second)  # the stream moves on between forwards
    layer.reseed()
    assert np.array_equal(layer(x), first)  # back to the start of its own seed
    layer.reseed(11)
    assert np.array_equal(layer(x), Dropout("other", p=0.5, seed=11)(x))


def test_the_trainer_reseeds_dropout_through_the_model_not_its_attributes():
    # the masks of an iteration depend on (run seed, iteration) alone
    model = FCN8s(num_classes=3, width=1 / 32)
    rng = np.random.default_rng(0)
    model.load_state_dict({"score_fr.weight": rng.standard_normal((3, 128, 1, 1)).astype(np.float32)},
                          strict=False)  # zero scorers would hide every mask
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    model.reseed_dropout(7, 2)
    out = model(x)
    model(x)
    model.reseed_dropout(7, 2)
    assert np.array_equal(model(x), out)
    model.reseed_dropout(7, 3)
    assert not np.array_equal(model(x), out)
