"""Video-level classification metrics and the background F-measure, hand-computed."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval import (EvalError, background_f_measure, load_ground_truth,  # noqa: E402
                  segment_labels, video_accuracy, video_map)


def test_video_accuracy_exact_match():
    scores = np.array([[0.30, 0.10],    # predicts {0} = GT {0}: right
                       [0.20, 0.90],    # predicts {1}, GT {0, 1}: wrong
                       [0.25, 0.25]])   # 0.25 >= 0.25: predicts {0, 1} = GT: right
    labels = np.array([[1, 0], [1, 1], [1, 1]])
    assert video_accuracy(scores, labels) == pytest.approx(2 / 3)
    assert video_accuracy(scores, labels, threshold=0.28) == pytest.approx(1 / 3)  # video 0 only


def test_video_map():
    scores = np.array([[0.9, 0.1, 0.0],
                       [0.8, 0.6, 0.0],
                       [0.7, 0.3, 0.0]])
    labels = np.array([[1, 0, 0],
                       [0, 1, 0],
                       [1, 0, 0]])
    # class 0: ranking 1, 0, 1 -> precision at the positives 1/1 and 2/3 -> AP 5/6
    # class 1: the positive ranks first -> AP 1
    # class 2: no positive video -> left out
    assert video_map(scores, labels) == pytest.approx((5 / 6 + 1) / 2)


def test_video_map_ties_do_not_depend_on_order():
    # two videos tied at 0.5, one positive: precision after the tied block is 1/2
    assert video_map(np.array([[0.5], [0.5]]), np.array([[1], [0]])) == pytest.approx(0.5)
    assert video_map(np.array([[0.5], [0.5]]), np.array([[0], [1]])) == pytest.approx(0.5)


def test_classification_bad_input():
    with pytest.raises(EvalError, match="shape"):
        video_accuracy(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(EvalError, match="no class has a positive"):
        video_map(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(EvalError, match="NaN"):
        video_map(np.full((1, 1), np.nan), np.ones((1, 1)))


def test_background_f_measure():
    pred = [np.array([True, True, False, False])]
    gt = [np.array([True, False, False, True])]
    # background TP 1, predicted background 2, true background 2 -> P = R = F = 1/2
    assert background_f_measure(pred, gt) == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f_measure": 0.5})
    # counts add over videos: TP 1 + 1, predicted 2 + 1, true 2 + 2
    # P = 2/3, R = 2/4, F = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7
    res = background_f_measure(pred + [np.array([True, False])], gt + [np.array([True, True])])
    assert res == pytest.approx({"precision": 2 / 3, "recall": 0.5, "f_measure": 4 / 7})
    # nothing predicted as background: every ratio is 0, not NaN
    assert background_f_measure([np.zeros(3, bool)], [np.ones(3, bool)])["f_measure"] == 0.0


def test_background_f_measure_length_mismatch():
    with pytest.raises(EvalError, match="video 0"):
        background_f_measure([np.zeros(3, bool)], [np.zeros(4, bool)])
    with pytest.raises(EvalError, match="masks"):
        background_f_measure([np.zeros(3, bool)], [])


def test_segment_labels_centre_rule():
    # 0.64 s segments, centres 0.32, 0.96, 1.60, 2.24, 2.88: only 1.60 lies in [1.0, 2.0]
    mask = segment_labels([(1.0, 2.0)], 5, 0.64)
    assert mask.tolist() == [False, False, True, False, False]
    # 1 s segments, centres 0.5, 1.5, 2.5, 3.5: both ends of [0.5, 1.5] count
    assert segment_labels([(0.5, 1.5)], 4, seconds_per_segment=1.0).tolist() == [
        True, True, False, False]
    # an instance running past the end and one after it are clipped
    assert segment_labels([(3.2, 99.0), (50.0, 60.0)], 4, 1.0).tolist() == [
        False, False, False, True]
    # a grid that starts at 0.2 s with 0.5 s cells: centres 0.45, 0.95, 1.45, 1.95
    assert segment_labels([(0.9, 1.5)], 4, 0.5, start=0.2).tolist() == [False, True, True, False]


def test_segment_labels_accepts_annotation_forms():
    dicts = [{"segment": ["0.0", "1.0"], "label": "X"}, {"segment": [2.0, 2.6], "label": "Y"}]
    expected = [True, True, False, True, False, False]  # centres 0.32 0.96 | 2.24
    assert segment_labels(dicts, 6, 0.64).tolist() == expected
    gt = load_ground_truth({"database": {"v": {"subset": "test", "annotations": dicts}}})
    assert segment_labels(gt.annotations["v"], 6, 0.64).tolist() == expected
    assert segment_labels([], 3, 0.64).tolist() == [False] * 3
    background = ~segment_labels(dicts, 6, 0.64)
    assert background_f_measure([background], [background])["f_measure"] == 1.0
