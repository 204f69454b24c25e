"""FCN's padded border as a constant (minifcn.engine.border, minifcn.engine.bordered).

Two kinds of oracle, neither taken from the code under test:

- the regions against the book's own blobs: outside the box and the frames every position
  of a blob equals one value per channel (whatever the image), and only inside the box do
  two different images give different values;
- whole networks on the engine (which then computes only the box and the frames) against
  the same networks on the book, forward and every gradient, in float64 to 1e-10 and
  float32 to 1e-5: every variant, both paddings, sizes from 1x1 up (odd, non-square, around
  pooling boundaries), batch 2, random upsampling weights, training and evaluation, with
  and without dropout.
"""
import numpy as np
import pytest

from minifcn import ops as book
from minifcn.engine.border import ConvBorder, Region, Span, trunk_borders, trunk_regions
from minifcn.layers import Conv2d, MaxPool2d, ReLU
from minifcn.models import MODELS
from minifcn.models.coords import least_pad
from minifcn.models.spec import network_specs
from tests.test_engine_equivalence import assert_same


def random_model(variant, ops, pad, dtype=np.float64, dropout=0.5, width=1 / 64):
    """A narrow net whose every parameter is random (upsamplers and scorers too), seeded."""
    model = MODELS[variant](num_classes=3, width=width, pad=pad, dropout=dropout,
                            learn_upsampling=True, dtype=dtype, seed=1, ops=ops)
    rng = np.random.default_rng(5)
    for _, p in model.named_parameters():
        scale = 0.5 if p.data.ndim == 1 else 0.4  # biases large enough to matter
        p.data = (rng.standard_normal(p.shape) * scale).astype(dtype)
    return model


def book_blobs(model, x):
    """Every trunk blob of the book's forward, by name."""
    blobs = {"data": x}
    for name in model.trunk_names:
        x = model.layers[name](x)
        blobs[name] = x
    return blobs


# ---- the regions, against the book's blobs ------------------------------------------------

@pytest.mark.parametrize("size,pad", [((9, 14), 100), ((80, 75), 69), ((1, 2), 100)])
def test_outside_box_and_frames_every_blob_is_one_value_per_channel(size, pad):
    model = random_model("fcn8s", "book", pad).eval()
    rng = np.random.default_rng(0)
    a = book_blobs(model, rng.standard_normal((1, 3, *size)))
    b = book_blobs(model, 10 * rng.standard_normal((2, 3, *size)))  # another image, batch 2
    specs = [s for s in model.specs if s.trunk]
    regions = trunk_regions(specs, *size)
    checked = 0
    for name, region in regions.items():
        assert region.shape == a[name].shape[2:], name
        varying = np.zeros(region.shape, bool)
        for rows, cols in region.pieces():
            assert not varying[rows, cols].any(), f"{name}: pieces overlap"
            varying[rows, cols] = True
        constant = np.zeros(region.shape, bool)
        for rows, cols in region.pieces(constant=True):
            constant[rows, cols] = True
        assert (varying ^ constant).all(), f"{name}: the pieces do not tile the map"
        if constant.any():
            values = np.concatenate([a[name], b[name]])[:, :, constant]  # (3, C, positions)
            np.testing.assert_allclose(values, values[:1, :, :1] + 0 * values, rtol=1e-12,
                                       atol=1e-12, err_msg=name)
            checked += 1
        # only the box sees the image: elsewhere two images give the same values
        box = np.zeros(region.shape, bool)
        box[region.rows.lo:region.rows.hi, region.cols.lo:region.cols.hi] = True
        np.testing.assert_allclose(a[name][0][:, ~box], b[name][1][:, ~box], rtol=1e-12,
                                   atol=1e-12, err_msg=name)
    assert checked > 10  # the test is not empty


def test_the_box_is_not_larger_than_the_image_reaches():
    # an image perturbed anywhere changes some position next to each edge of every box
    model = random_model("fcn8s", "book", 100, width=1 / 16).eval()  # ReLUs close few edges
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 12, 17))
    a, b = book_blobs(model, x), book_blobs(model, x + rng.standard_normal(x.shape))
    for name, region in trunk_regions([s for s in model.specs if s.trunk], 12, 17).items():
        if name == "data" or region.rows.hi - region.rows.lo == region.rows.size:
            continue
        differs = (np.abs(a[name] - b[name]) > 1e-9).any(axis=(0, 1))
        rows, cols = np.nonzero(differs)
        assert (rows.min(), rows.max() + 1) == (region.rows.lo, region.rows.hi), name
        assert (cols.min(), cols.max() + 1) == (region.cols.lo, region.cols.hi), name


def test_span_arithmetic_by_hand():
    # conv1_1 of a 500-pixel side, pad 100: windows 98..599 touch the image (rows 100..599)
    conv1_1 = Span.whole(500).after_window(3, 1, 100, 698, padding_is_frame=False)
    assert conv1_1 == Span(698, 98, 600, 0, 0)
    conv1_2 = conv1_1.after_window(3, 1, 1, 698)  # its padding meets the constant: frames
    assert conv1_2 == Span(698, 97, 601, 1, 1)
    pool1 = conv1_2.after_window(2, 2, 0, 349, padding_is_frame=False)
    assert pool1 == Span(349, 48, 301, 1, 1)
    assert list(Span(10, 4, 6, 1, 2).kinds()) == [(0, 1, True, False), (1, 4, False, False),
                                                  (4, 6, False, True), (6, 8, False, False),
                                                  (8, 10, True, False)]


def test_random_dropout_makes_the_rest_of_the_trunk_whole():
    specs = [s for s in network_specs("fcn8s") if s.trunk]
    regions = trunk_regions(specs, 500, 500, random_dropout=True)
    assert not regions["fc6"].is_whole or regions["pool5"].is_whole
    assert all(regions[n].is_whole for n in ("drop6", "fc7", "score_fr"))
    assert not trunk_regions(specs, 500, 500)["conv3_1"].is_whole


def test_constants_follow_a_weight_update():
    model = random_model("fcn32s", "engine", 100)
    x = np.zeros((1, 3, 5, 5))
    before = model.trunk_borders(x)["conv1_2"].out_constant.copy()
    model.layers["conv1_1"].bias.data += 1.0
    assert not np.allclose(model.trunk_borders(x)["conv1_2"].out_constant, before)


def test_the_engine_takes_the_border_and_the_book_does_not():
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 7))
    engine_model, book_model = random_model("fcn8s", "engine", 100), random_model("fcn8s", "book", 100)
    engine_model.eval()(x), book_model.eval()(x)
    assert isinstance(engine_model.layers["conv1_1"].cache[-1], ConvBorder)
    assert isinstance(engine_model.layers["conv3_3"].cache[-1], ConvBorder)
    assert book_model.trunk_borders(x) == {}
    assert not isinstance(book_model.layers["conv1_1"].cache[-1], ConvBorder)


# ---- whole networks, engine (bordered) against the book -----------------------------------

def run(variant, ops, size, pad, training, dropout, dtype=np.float64, batch=2):
    model = random_model(variant, ops, pad, dtype, dropout).train(training)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((batch, 3, *size)).astype(dtype)
    scores = model(x)
    dscores = rng.standard_normal(scores.shape).astype(dtype)
    dx = model.backward(dscores)
    return [("scores", scores), ("dx", dx)] + [(n, p.grad) for n, p in model.named_parameters()]


EVAL, TRAIN, TRAIN_NO_DROPOUT = (False, 0.5), (True, 0.5), (True, 0.0)
LEAST = {variant: least_pad(variant) for variant in MODELS}
CASES = [("fcn8s", (1, 1), 100, *EVAL), ("fcn8s", (1, 1), 100, *TRAIN),
         ("fcn8s", (1, 1), 100, *TRAIN_NO_DROPOUT), ("fcn8s", (2, 3), 100, *TRAIN),
         ("fcn8s", (7, 5), 100, *EVAL), ("fcn8s", (57, 58), LEAST["fcn8s"], *TRAIN),
         ("fcn8s", (16, 17), 100, *TRAIN_NO_DROPOUT), ("fcn8s", (63, 65), LEAST["fcn8s"], *EVAL),
         ("fcn8s", (31, 33), 100, *EVAL), ("fcn8s", (33, 47), 100, *TRAIN),
         ("fcn8s", (64, 71), LEAST["fcn8s"], *TRAIN_NO_DROPOUT)]
CASES += [(variant, size, pad, *mode) for variant in ("fcn32s", "fcn16s", "fcn8s-atonce")
          for size, pad, mode in [((1, 1), 100, TRAIN_NO_DROPOUT), ((8, 9), 100, TRAIN),
                                  ((57, 59), LEAST[variant], EVAL)]]


@pytest.mark.parametrize("variant,size,pad,training,dropout", CASES)
def test_bordered_engine_equals_the_book(variant, size, pad, training, dropout):
    ref = run(variant, "book", size, pad, training, dropout)
    got = run(variant, "engine", size, pad, training, dropout)
    for (name, a), (_, b) in zip(got, ref):
        assert_same(a, b, name)


@pytest.mark.parametrize("variant,size", [("fcn8s", (24, 19)), ("fcn32s", (3, 2))])
def test_bordered_engine_equals_the_book_in_float32(variant, size):
    ref = run(variant, "book", size, 100, True, 0.0, np.float32)
    got = run(variant, "engine", size, 100, True, 0.0, np.float32)
    for (name, a), (_, b) in zip(got, ref):
        assert_same(a, b, name)


def test_trunk_borders_by_hand():
    # one 1x1 conv (bias 2, weight 3) on a 2x2 image padded by 1: a 4x4 output whose ring
    # is the bias and whose middle 2x2 is the image's
    class Spec:
        name, op, kernel, stride, padding = "c", "conv", 1, 1, 1

    weight, bias = np.full((1, 3, 1, 1), 3.0), np.array([2.0])
    conv = Conv2d("c", weight, bias, 1, 1)
    border = trunk_borders([Spec()], 2, 2, lambda name, c: conv.blank(c), np.zeros(3))["c"]
    assert border.out == Region(Span(4, 1, 3), Span(4, 1, 3))
    assert border.out_constant.tolist() == [2.0]
    out = book.conv2d_forward(np.ones((1, 3, 2, 2)), weight, bias, 1, 1)[0][0, 0]
    assert out[0, 0] == 2.0 and out[1, 1] == 11.0


def test_a_layers_blank_response_is_its_output_on_a_constant_map():
    rng = np.random.default_rng(3)
    constant = rng.standard_normal(4)
    x = np.broadcast_to(constant[:, None, None], (1, 4, 5, 6)).copy()
    conv = Conv2d("c", rng.standard_normal((3, 4, 3, 3)), rng.standard_normal(3), 1, 1)
    out = book.conv2d_forward(x, conv.weight.data, conv.bias.data, 1, 1)[0]
    np.testing.assert_allclose(conv.blank(constant), out[0, :, 2, 3], rtol=1e-12)  # inside
    np.testing.assert_array_equal(ReLU("r").blank(constant), np.maximum(constant, 0))
    assert MaxPool2d("p", 2, 2, ceil_mode=True).blank(constant) is constant


# ---- the input gradient only where the layer below reads it ------------------------------

def test_box_input_grad_is_the_books_on_the_box_and_keeps_each_channels_sum():
    from minifcn.engine.bordered import bordered_input_grad

    model = random_model("fcn8s", "engine", 100)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 10))
    border = model.trunk_borders(x)["conv1_2"]
    h, w = border.inp.shape
    inp = rng.standard_normal((2, 2, h, w))
    weight = rng.standard_normal((3, 2, 3, 3))
    _, cache = book.conv2d_forward(inp, weight, None, 1, 1)
    dout = rng.standard_normal((2, 3, h, w))
    ref = book.conv2d_backward(dout, cache)[0]  # the book's whole input gradient
    got = bordered_input_grad(dout, weight, (1, 1), border)
    varying = np.zeros((h, w), bool)
    for rows, cols in border.inp.pieces():
        varying[rows, cols] = True
    assert 0 < varying.sum() < varying.size  # both regions are there
    np.testing.assert_allclose(got[:, :, varying], ref[:, :, varying], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=(0, 2, 3)), ref.sum(axis=(0, 2, 3)), rtol=1e-10)
    constant = got[:, :, ~varying]  # one value per channel there
    np.testing.assert_array_equal(constant, constant[:1, :, :1] + 0 * constant)


@pytest.mark.parametrize("n", [1, 2])
def test_box_input_grad_needs_no_second_map(n):
    # conv1_2 at 500x500 held dout, dx and a third map of dout's size (the batch sum) at
    # once, the training pass's peak: the sums now come straight from dout
    import tracemalloc

    from minifcn.engine.bordered import bordered_input_grad

    model = random_model("fcn8s", "engine", 100)
    rng = np.random.default_rng(8)
    border = model.trunk_borders(rng.standard_normal((n, 3, 30, 40)))["conv1_2"]
    h, w = border.inp.shape
    weight = rng.standard_normal((8, 8, 3, 3))
    dout = rng.standard_normal((n, 8, h, w))
    bordered_input_grad(dout, weight, (1, 1), border)  # the scratch buffers, made once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        dx = bordered_input_grad(dout, weight, (1, 1), border)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert dx.nbytes <= peak < 1.25 * dx.nbytes, (peak, dx.nbytes)


TRAINING_CASES = [("fcn8s", (1, 1), 100), ("fcn32s", (8, 9), 100),
                  ("fcn8s", (57, 58), LEAST["fcn8s"]), ("fcn16s", (33, 20), 100)]


@pytest.mark.parametrize("variant,size,pad,everywhere", [
    *[(*case, False) for case in TRAINING_CASES], ("fcn8s", (12, 9), 100, True)])
def test_training_backward_without_input_grad_equals_the_book(variant, size, pad, everywhere,
                                                               monkeypatch):
    if everywhere:  # every convolution with a constant below takes the box route, pays or not
        monkeypatch.setattr("minifcn.engine.bordered.BOX_SHARE", 0.0)
    # what the trainer runs: no input gradient, so the trunk's convolutions want theirs only
    # on the box and frames (and the sums elsewhere)
    def grads(ops):
        model = random_model(variant, ops, pad, dropout=0.0, width=1 / 32).train()
        bias = model.layers["conv1_1"].bias
        bias.data = np.abs(bias.data)  # relu1_1 passes the constant region's gradient on
        rng = np.random.default_rng(12)
        x = rng.standard_normal((2, 3, *size))
        scores = model(x)
        assert model.backward(rng.standard_normal(scores.shape), input_grad=False) is None
        return [(n, p.grad) for n, p in model.named_parameters()]

    for (name, a), (_, b) in zip(grads("engine"), grads("book")):
        assert_same(a, b, name)


# ---- the backward on the rectangle that the output gradient occupies ---------------------

@pytest.mark.parametrize("shape,kernel,padding,rows,cols", [
    ((2, 3, 11, 9), (3, 3), (1, 1), (2, 7), (3, 5)),  # inside, away from the edges
    ((1, 2, 7, 10), (3, 2), (2, 0), (0, 4), (6, 9)),  # at the edges, padding wider than kh/2
    ((2, 2, 8, 8), (7, 7), (0, 0), (1, 2), (0, 1)),  # fc6's kind: 7x7, no padding
])
def test_reach_backward_equals_the_books(shape, kernel, padding, rows, cols):
    from minifcn.engine.reach import dout_reach, reach_backward

    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((3, shape[1], *kernel))
    out, cache = book.conv2d_forward(x, weight, None, 1, padding)
    dout = np.zeros(out.shape)
    dout[:, :, slice(*rows), slice(*cols)] = rng.standard_normal(
        (shape[0], 3, rows[1] - rows[0], cols[1] - cols[0]))
    reach = dout_reach(dout)
    assert reach == (slice(*rows), slice(*cols))  # the rectangle, found again from dout
    dx, dweight = reach_backward(dout, x, weight, padding, reach)
    ref_dx, ref_dweight, _ = book.conv2d_backward(dout, cache)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dweight, ref_dweight, rtol=1e-12, atol=1e-12)
    assert dout_reach(np.zeros(out.shape)) is None


# ---- which layers keep their border --------------------------------------------------------

@pytest.mark.parametrize("box,keeps", [((4, 9), True), ((3, 10), False)])  # 68, 82 %
def test_a_banded_layer_mostly_input_dependent_computes_its_whole_map(box, keeps):
    from minifcn import engine
    from minifcn.engine.bordered import WHOLE_SHARE

    rng = np.random.default_rng(11)
    h = w = 15
    region = Region(Span(h, *box, 1, 1), Span(w, *box, 1, 1))
    constant = rng.standard_normal(3)
    x = np.broadcast_to(constant[None, :, None, None], (2, 3, h, w)).copy()
    for r, c in region.pieces():
        x[:, :, r, c] = rng.standard_normal((2, 3, r.stop - r.start, c.stop - c.start))
    weight, bias = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out_region = region.after_conv(3, 1, 1)
    border = ConvBorder(region, out_region, constant,
                        bias + weight.sum(axis=(2, 3)) @ constant)
    assert (out_region.varying_fraction() < WHOLE_SHARE) == keeps and not out_region.is_whole
    out, cache = engine.conv2d_forward(x, weight, bias, 1, 1, border=border)
    assert (cache[-1] is border) == keeps  # the backward takes the same route
    ref, ref_cache = book.conv2d_forward(x, weight, bias, 1, 1)
    assert_same(out, ref)
    dout = rng.standard_normal(out.shape)
    got, want = engine.conv2d_backward(dout, cache), book.conv2d_backward(dout, ref_cache)
    for g, w in zip(got, want):
        assert_same(g, w)
