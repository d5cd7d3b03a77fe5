"""The fast code equals the literal reference implementations of eval/reference.py that
scripts/benchmark.py times it against: post-processing and NMS against the release-style
loops, the evaluator against the pandas-style re-creation of ActivityNet's evaluator (the
plain-loop evaluator is held to it in test_eval_detection.py)."""
from dataclasses import replace

import numpy as np
import pytest

from eval.reference import (action_like_cas, evaluate_detection_pandas, loop_localize_video, loop_nms,
                            same_proposals)
from options import parse_args
from postprocess import Localization, localize_video, nms
from test_eval_detection import THRESHOLD_SETS, assert_same_aps, make_gt, make_preds, random_case

CLASSES = [f"class{c}" for c in range(20)]
RECIPE = Localization.from_config(parse_args(["--output_path", "unused"]))   # the paper's options


@pytest.mark.parametrize("seed", range(3))
def test_postprocessing_matches_the_loop_version(seed):
    params = RECIPE
    rng = np.random.default_rng(seed)
    cases = [action_like_cas(rng, 120, 20) for _ in range(3)]
    noise = rng.normal(size=(120, 20)).astype(np.float32)  # noise: many short runs
    probs = np.full(20, 0.02, dtype=np.float32)
    probs[[3, 7]] = 0.4
    cases.append((noise, probs))
    for cas, probs in cases:
        for step, start in ((16 / 25, 0.0), (0.5, 1.25)):  # the release's grid and another one
            where = dict(num_real_segments=300, params=params, seconds_per_segment=step, start=start)
            fast, _ = localize_video(cas, probs, CLASSES, **where)
            loop = loop_localize_video(cas, probs, CLASSES, **where)
            assert fast and same_proposals(fast, loop)


def test_postprocessing_matches_the_loop_version_with_other_options():
    """Fallback to the top class (no class above class_th), another scale and NMS threshold."""
    params = replace(RECIPE, class_th=0.95, scale=5, nms_thresh=0.3, lambda_oic=0.5, gamma_oic=0.0)
    rng = np.random.default_rng(7)
    cas, probs = action_like_cas(rng, 90, 20)
    where = dict(num_real_segments=141, params=params, seconds_per_segment=16 / 25)
    fast, predicted = localize_video(cas, probs, CLASSES, **where)
    assert len(predicted) == 1
    assert fast and same_proposals(fast, loop_localize_video(cas, probs, CLASSES, **where))


def test_nms_matches_the_plain_greedy_loop():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(0, 40))
        starts = rng.integers(0, 20, n).astype(float) if trial % 2 else rng.random(n) * 10
        ends = starts + (rng.integers(0, 6, n) if trial % 2 else rng.random(n) * 3)
        scores = rng.integers(0, 4, n).astype(float) if trial % 3 == 0 else rng.random(n)  # ties too
        for threshold in (0.0, 0.3, 0.7, 1.0):
            expected = loop_nms(starts.tolist(), ends.tolist(), scores.tolist(), threshold)
            assert nms(starts, ends, scores, threshold).tolist() == expected


def test_loop_nms_suppresses_at_exactly_the_threshold():
    # tIoU([0, 10], [0, 7]) = 0.7 exactly; [20, 21] overlaps nothing
    assert loop_nms([0, 0, 20], [10, 7, 21], [0.9, 0.8, 0.1], 0.7) == [0, 2]
    assert loop_nms([0, 0, 20], [10, 7, 21], [0.9, 0.8, 0.1], 0.71) == [0, 1, 2]
    assert loop_nms([0, 0], [1, 1], [0.5, 0.5], 0.7) == [0]  # tie: input order


def test_pandas_style_reference_matches_fast():
    """The pandas-style re-creation of the ActivityNet evaluator gives our APs: score and
    tIoU ties, exact thresholds, zero-length segments, other-subset videos."""
    pytest.importorskip("pandas")
    # tIoU tie between g1 and g2 (file order picks g1), as in test_thresholds_are_independent
    gt = make_gt({"v1": [("A", 0, 10), ("A", 4, 14)]})
    rows = [("v1", "A", 0.9, 2, 12), ("v1", "A", 0.8, 4, 14)]
    assert evaluate_detection_pandas(gt, make_preds(rows), tiou_thresholds=(0.5, 0.7))[
        "ap_per_class"]["A"] == pytest.approx([1.0, 0.25], abs=1e-12)
    for seed in range(24):
        rng = np.random.default_rng(seed)
        gt, preds = random_case(rng)
        assert_same_aps(gt, preds, THRESHOLD_SETS[seed % len(THRESHOLD_SETS)], evaluate_detection_pandas)
