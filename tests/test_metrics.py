"""Segmentation metrics against numbers worked out by hand (REFERENCE.md section 5)."""
import warnings

import numpy as np
import pytest

from minifcn.backend import gpu_available
from minifcn.metrics import ConfusionMatrix, confusion_matrix, format_scores, scores_from_hist


def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    # gt 0 -> pred 0, 1; gt 1 -> pred 1, 1; gt 2 -> pred 2, 0
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 1]])
    hist = confusion_matrix(gt, pred, 3)
    assert hist.dtype == np.int64 and hist.shape == (3, 3)
    np.testing.assert_array_equal(hist, expected)


def test_scores_three_classes_by_hand():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 0, 1], [1, 2, 2]]), np.array([[0, 1, 1], [1, 2, 0]]))
    s = cm.scores()
    # rows (gt) 2, 2, 2; columns (pred) 2, 3, 1; diagonal 1, 2, 1; total 6
    # pixel acc = 4/6; class acc = 1/2, 2/2, 1/2 -> mean 2/3
    # IU = 1/(2+2-1), 2/(2+3-2), 1/(2+1-1) = 1/3, 2/3, 1/2 -> mean 1.5/3 = 0.5
    assert s["pixel_accuracy"] == pytest.approx(0.6666667)
    assert s["mean_accuracy"] == pytest.approx(0.6666667)
    np.testing.assert_allclose(s["per_class_accuracy"], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(s["per_class_iu"], [0.3333333, 0.6666667, 0.5], rtol=1e-6)
    assert s["mean_iu"] == pytest.approx(0.5)
    # equal frequencies 1/3 each: fwIU = mean IU here
    assert s["frequency_weighted_iu"] == pytest.approx(0.5)


def test_frequency_weighted_iu_differs_from_mean_iu():
    gt = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 0, 0, 1, 1, 0])
    # hist = [[5, 1], [1, 1]]: rows 6, 2; columns 6, 2; total 8
    # pixel acc 6/8 = 0.75; class acc 5/6, 1/2 -> mean 2/3
    # IU0 = 5/(6+6-5) = 5/7, IU1 = 1/(2+2-1) = 1/3 -> mean IU 11/21 = 0.5238095
    # fwIU = 6/8 * 5/7 + 2/8 * 1/3 = 13/21 = 0.6190476
    s = scores_from_hist(confusion_matrix(gt, pred, 2))
    assert s["pixel_accuracy"] == pytest.approx(0.75)
    assert s["mean_accuracy"] == pytest.approx(0.6666667)
    assert s["mean_iu"] == pytest.approx(0.5238095)
    assert s["frequency_weighted_iu"] == pytest.approx(0.6190476)


def test_void_and_out_of_range_ground_truth_are_ignored():
    gt = np.array([0, 0, 0, 0, 0, 0, 1, 1, 255, 255, 7, -1])
    pred = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 2), [[5, 1], [1, 1]])


def test_prediction_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 2]), 2)


def test_class_absent_everywhere_is_nan_and_skipped():
    # 4 classes, class 3 never in gt nor pred. hist rows: [1,0,0,0], [0,1,0,0], [0,1,0,0], 0
    # IU = 1/1, 1/(1+2-1), 0/(1+0-0), 0/0 = 1, 0.5, 0, NaN -> mean IU (1+0.5+0)/3 = 0.5
    # class acc = 1, 1, 0, NaN -> mean 2/3; fwIU = (1/3)(1 + 0.5 + 0) = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the expected 0/0 must not warn
        s = scores_from_hist(confusion_matrix(np.array([0, 1, 2]), np.array([0, 1, 1]), 4))
    np.testing.assert_allclose(s["per_class_iu"][:3], [1.0, 0.5, 0.0])
    assert np.isnan(s["per_class_iu"][3]) and np.isnan(s["per_class_accuracy"][3])
    assert s["mean_iu"] == pytest.approx(0.5)
    assert s["mean_accuracy"] == pytest.approx(0.6666667)
    assert s["frequency_weighted_iu"] == pytest.approx(0.5)


def test_class_predicted_but_absent_from_ground_truth():
    # hist = [[1, 1], [0, 0]]: IU0 = 1/(2+1-1) = 0.5, IU1 = 0/(0+1-0) = 0 (not NaN),
    # acc0 = 1/2, acc1 = 0/0 = NaN; mean IU 0.25, mean acc 0.5; fwIU = 1 * 0.5 (freq1 = 0)
    s = scores_from_hist(confusion_matrix(np.array([0, 0]), np.array([0, 1]), 2))
    np.testing.assert_allclose(s["per_class_iu"], [0.5, 0.0])
    assert np.isnan(s["per_class_accuracy"][1])
    assert s["mean_iu"] == pytest.approx(0.25)
    assert s["mean_accuracy"] == pytest.approx(0.5)
    assert s["frequency_weighted_iu"] == pytest.approx(0.5)


def _loop_hist(gt, pred, c):
    """Oracle: count pixel by pixel."""
    hist = np.zeros((c, c), dtype=np.int64)
    for g, p in zip(gt.ravel(), pred.ravel()):
        if 0 <= g < c:
            hist[g, p] += 1
    return hist


def test_matches_loop_oracle_and_accumulates():
    rng = np.random.default_rng(0)
    c = 4
    gts = [rng.choice([0, 1, 2, 3, 255], size=(5, 7)) for _ in range(3)]
    preds = [rng.integers(0, c, size=(5, 7)) for _ in range(3)]
    one_by_one = ConfusionMatrix(c)
    for g, p in zip(gts, preds):
        one_by_one.update(g, p)
    batched = ConfusionMatrix(c)
    batched.update(np.stack(gts), np.stack(preds))  # (N, H, W) in one call
    oracle = _loop_hist(np.concatenate(gts), np.concatenate(preds), c)
    np.testing.assert_array_equal(one_by_one.hist, oracle)
    np.testing.assert_array_equal(batched.hist, oracle)
    # Accumulating is not averaging per-image scores: the scores come from the summed matrix.
    assert one_by_one.scores()["mean_iu"] == pytest.approx(scores_from_hist(oracle)["mean_iu"])
    one_by_one.reset()
    assert one_by_one.hist.sum() == 0


def test_format_scores_lists_metrics_and_classes():
    s = scores_from_hist(confusion_matrix(np.array([0, 1, 2]), np.array([0, 1, 1]), 4))
    text = format_scores(s, ["bg", "a", "b", "c"])
    for word in ("pixel accuracy", "mean accuracy", "mean IU", "frequency", "bg", "c"):
        assert word in text
    assert "n/a" in text  # class 3 is NaN
    assert "50.0" in text  # mean IU
    assert "class 0" in format_scores(s)


@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a GPU")
def test_cupy_arrays_give_the_same_matrix():
    import cupy
    rng = np.random.default_rng(1)
    gt = rng.choice([0, 1, 2, 255], size=(2, 9, 11))
    pred = rng.integers(0, 3, size=(2, 9, 11))
    hist = confusion_matrix(cupy.asarray(gt), cupy.asarray(pred), 3)
    assert isinstance(hist, cupy.ndarray)
    np.testing.assert_array_equal(hist.get(), _loop_hist(gt, pred, 3))
    cm = ConfusionMatrix(3)
    cm.update(cupy.asarray(gt), cupy.asarray(pred))
    np.testing.assert_array_equal(cm.hist, _loop_hist(gt, pred, 3))
