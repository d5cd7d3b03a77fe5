"""Detection AP: hand-computed cases, the fast evaluator against the loop reference,
bad-input messages and the command line. All data is built here."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval import (DEFAULT_TIOUS, EvalError, evaluate_detection, format_table,  # noqa: E402
                  load_ground_truth, load_predictions)
from eval.reference import evaluate_detection_loop  # noqa: E402


def make_gt(videos, subset="test", others=None):
    """videos: {vid: [(label, start, end), ...]}; others: {vid: subset} without annotations."""
    database = {vid: {"subset": subset,
                      "annotations": [{"label": l, "segment": [s, e]} for l, s, e in anns]}
                for vid, anns in videos.items()}
    for vid, other_subset in (others or {}).items():
        database[vid] = {"subset": other_subset, "annotations": []}
    return {"database": database}


def make_preds(rows):
    """rows: [(vid, label, score, start, end), ...] in input order."""
    results = {}
    for vid, label, score, start, end in rows:
        results.setdefault(vid, []).append(
            {"label": label, "score": score, "segment": [start, end]})
    return {"version": "VERSION 1.3", "results": results, "external_data": {}}


def ap(gt, rows, tious, label="A"):
    return evaluate_detection(gt, make_preds(rows), tiou_thresholds=tious)["ap_per_class"][label]


# ---------------------------------------------------------------- hand-computed cases

def test_next_best_ground_truth_after_lock():
    gt = make_gt({"v1": [("A", 0, 10), ("A", 5, 15)]})
    rows = [("v1", "A", 0.9, 0, 10),   # tIoU 1 with g1, 1/3 with g2: takes g1
            ("v1", "A", 0.8, 1, 10)]   # g1 (0.9) is locked; next best g2: 5/14 = 0.357
    # tIoU 0.3: TP, TP -> precision 1, 1; recall 1/2, 1 -> AP = 1
    # tIoU 0.5: TP, FP (g2's 0.357 < 0.5 ends the search) -> AP = 1/2 * 1 = 0.5
    assert ap(gt, rows, (0.3, 0.5)) == pytest.approx([1.0, 0.5], abs=1e-12)


def test_prediction_on_video_without_ground_truth():
    gt = make_gt({"v1": [("A", 0, 10)], "v2": [("B", 0, 10)]}, others={"t1": "train"})
    rows = [("v2", "A", 0.9, 0, 10),   # v2 has no A instance: FP
            ("t1", "A", 0.85, 0, 10),  # video of another subset: FP, counted
            ("v1", "A", 0.8, 0, 10)]   # TP
    # precision 0, 0, 1/3; recall 0, 0, 1 -> AP = 1 * 1/3
    with pytest.warns(UserWarning, match="1 video"):
        res = evaluate_detection(gt, make_preds(rows), tiou_thresholds=(0.5,))
    assert res["ap_per_class"]["A"] == pytest.approx([1 / 3], abs=1e-12)
    assert res["num_unknown_videos"] == 1
    assert res["num_predictions"] == 3


def test_class_without_predictions_counts_as_zero():
    gt = make_gt({"v1": [("A", 0, 10), ("B", 20, 30)]})
    res = evaluate_detection(gt, make_preds([("v1", "A", 0.5, 0, 10)]), tiou_thresholds=(0.5,))
    # AP(A) = 1, AP(B) = 0 (no prediction) -> mAP 0.5
    assert res["classes"] == ["A", "B"]
    assert res["ap_per_class"] == {"A": [1.0], "B": [0.0]}
    assert res["mAP"] == [0.5]


def test_score_tie_keeps_input_order():
    gt = make_gt({"v1": [("A", 0, 10)]})
    fp, tp = ("v1", "A", 0.5, 50, 60), ("v1", "A", 0.5, 0, 10)
    # FP first: precision 0, 1/2; recall 0, 1 -> AP 0.5
    assert ap(gt, [fp, tp], (0.5,)) == [0.5]
    # TP first: precision 1, 1/2; recall 1, 1 -> AP 1
    assert ap(gt, [tp, fp], (0.5,)) == [1.0]


def test_tiou_exactly_equal_to_threshold_passes():
    gt = make_gt({"v1": [("A", 0, 10)]})
    rows = [("v1", "A", 0.9, 0, 7)]  # tIoU = 7 / 10, the double nearest 0.7, i.e. == 0.7
    assert 7.0 / 10.0 == 0.7
    linspace_07 = float(np.linspace(0.1, 0.9, 9)[6])  # 0.7000000000000001
    assert linspace_07 > 0.7
    # 0.7 passes (AP 1); the reference's linspace value and 0.75 fail (AP 0)
    assert ap(gt, rows, (0.7, linspace_07, 0.75)) == [1.0, 0.0, 0.0]


def test_two_predictions_on_one_ground_truth():
    gt = make_gt({"v1": [("A", 0, 10), ("A", 20, 30)]})
    rows = [("v1", "A", 0.9, 0, 10),   # TP on g1
            ("v1", "A", 0.8, 1, 10),   # g1 again (tIoU 0.9, locked), g2 tIoU 0: FP
            ("v1", "A", 0.7, 20, 30)]  # TP on g2
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert ap(gt, rows, (0.5,)) == pytest.approx([5 / 6], abs=1e-12)


def test_interpolation_takes_best_precision_to_the_right():
    gt = make_gt({"v1": [("A", 0, 10), ("A", 20, 30)]})
    rows = [("v1", "A", 0.9, 40, 50), ("v1", "A", 0.8, 0, 10), ("v1", "A", 0.7, 20, 30)]
    # precision 0, 1/2, 2/3; recall 0, 1/2, 1; envelope 2/3, 2/3, 2/3
    # AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3 (non-interpolated would be 7/12)
    assert ap(gt, rows, (0.5,)) == pytest.approx([2 / 3], abs=1e-12)


def test_thresholds_are_independent():
    gt = make_gt({"v1": [("A", 0, 10), ("A", 4, 14)]})
    rows = [("v1", "A", 0.9, 2, 12),   # tIoU 8/12 = 2/3 with g1 AND with g2
            ("v1", "A", 0.8, 4, 14)]   # tIoU 3/7 with g1, 1 with g2
    # p1's tie between g1 and g2 goes to g1 (file order).
    # at 0.5: p1 -> g1, p2 -> g2: AP 1.  At 0.7: p1 FP, p2 -> g2: precision 0, 1/2,
    # recall 0, 1/2 -> AP = 1/2 * 1/2 = 0.25
    assert ap(gt, rows, (0.5, 0.7)) == pytest.approx([1.0, 0.25], abs=1e-12)


def test_no_predictions_at_all():
    gt = make_gt({"v1": [("A", 0, 10)]})
    res = evaluate_detection(gt, {"results": {}})
    assert res["mAP"] == [0.0] * 9 and res["average_mAP"] == 0.0


# ---------------------------------------------------------------- formats and result

def test_release_and_activitynet_formats():
    release = {"database": {"video_test_1": {"subset": "test", "annotations": [
        {"segment": ["18.6", "24.8"], "label": "HighJump"}]}}}
    res = evaluate_detection(release, make_preds([("video_test_1", "HighJump", 1.0, 18.6, 24.8)]))
    assert res["mAP"] == [1.0] * 9
    anet = {"version": "VERSION 1.3", "taxonomy": [{"nodeName": "x"}], "database": {
        "abc": {"subset": "validation", "duration": 50.0, "url": "",
                "annotations": [{"segment": [1.5, 9.0], "label": "Run"}]},
        "def": {"subset": "testing", "annotations": []}}}
    preds = make_preds([("v_abc", "Run", 0.5, 1.5, 9.0)])   # result ids keep 'v_'
    res = evaluate_detection(anet, preds, subset="validation", tiou_thresholds=(0.5, 0.95))
    assert res["mAP"] == [1.0, 1.0] and res["num_unknown_videos"] == 0


def test_result_keys_and_averages():
    gt = make_gt({"v1": [("A", 0, 10)], "v2": [("B", 0, 10)]})
    preds = make_preds([("v1", "A", 0.9, 0, 8), ("v2", "B", 0.9, 0, 10)])
    res = evaluate_detection(gt, preds)
    assert res["tiou"] == list(DEFAULT_TIOUS)
    # A: tIoU 0.8 -> AP 1 up to 0.8, 0 at 0.9; B: AP 1 everywhere
    assert res["mAP"] == pytest.approx([1.0] * 8 + [0.5])
    assert res["average_mAP"] == pytest.approx(8.5 / 9)
    assert set(res["averages"]) == {"0.1:0.5", "0.1:0.7", "0.1:0.9", "0.3:0.7"}
    assert res["averages"]["0.1:0.9"] == pytest.approx(res["average_mAP"])
    assert res["averages"]["0.3:0.7"] == pytest.approx(1.0)
    json.dumps(res)  # plain Python types only
    anet = evaluate_detection(gt, preds, tiou_thresholds=np.linspace(0.5, 0.95, 10))
    assert set(anet["averages"]) == {"0.5:0.95"}


def test_loaded_ground_truth_and_predictions_are_reused():
    gt_dict = make_gt({"v1": [("A", 0, 10), ("B", 3, 9)]}, subset="validation")
    gt = load_ground_truth(gt_dict, subset="validation")
    assert gt.classes == ["A", "B"] and gt.videos == ["v1"]
    assert gt.annotations["v1"][1].label == "B" and gt.annotations["v1"][1].end == 9.0
    preds = load_predictions(make_preds([("v1", "B", 0.3, 3, 9)]))
    assert evaluate_detection(gt, preds)["ap_per_class"]["B"] == [1.0] * 9


def test_format_table():
    gt = make_gt({"v1": [("A", 0, 10)], "v2": [("LongClassName", 0, 10)]})
    res = evaluate_detection(gt, make_preds([("v1", "A", 0.9, 0, 10)]))
    text = format_table(res)
    assert "mAP" in text and "50.00" in text and "0.1:0.5" in text and "LongClassName" not in text
    assert "LongClassName" in format_table(res, per_class=True)


# ---------------------------------------------------------------- fast == reference

def random_case(rng):
    """Small random inputs on an integer grid, so that tIoU ties, exact threshold hits,
    zero-length segments, duplicate instances and score ties all happen."""
    classes = ["A", "B", "C", "D"][: rng.integers(1, 5)]
    videos = {}
    for v in range(rng.integers(1, 6)):
        anns = []
        for _ in range(rng.integers(0, 7)):
            start = int(rng.integers(0, 20))
            anns.append((str(rng.choice(classes)), start, start + int(rng.integers(0, 8))))
        videos[f"v{v}"] = anns
    videos["v0"].append((classes[0], 2, 6))  # at least one instance
    gt = make_gt(videos, others={"train0": "train"})
    classes = sorted({label for anns in videos.values() for label, _, _ in anns})
    rows = []
    for _ in range(rng.integers(0, 60)):
        vid = "train0" if rng.random() < 0.05 else f"v{rng.integers(len(videos))}"
        start = int(rng.integers(0, 22))
        score = round(float(rng.random()), 1)  # few distinct values: many ties
        rows.append((vid, str(rng.choice(classes)), score, start, start + int(rng.integers(0, 8))))
    return gt, make_preds(rows)


THRESHOLD_SETS = [DEFAULT_TIOUS, (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
                  (0.0, 0.25, 0.5, 1.0), (0.7, 0.3, 0.7000000000000001)]


@pytest.mark.parametrize("seed", range(120))
def test_fast_matches_reference_random(seed):
    rng = np.random.default_rng(seed)
    gt, preds = random_case(rng)
    tious = THRESHOLD_SETS[seed % len(THRESHOLD_SETS)]
    assert_same_aps(gt, preds, tious, evaluate_detection_loop)


def assert_same_aps(gt, preds, tious, other_evaluator):
    """The fast evaluator and another implementation agree to 1e-12, class by class."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = evaluate_detection(gt, preds, tiou_thresholds=tious)
        slow = other_evaluator(gt, preds, tiou_thresholds=tious)
    assert fast["ap_per_class"].keys() == slow["ap_per_class"].keys()
    for label, values in slow["ap_per_class"].items():
        np.testing.assert_allclose(fast["ap_per_class"][label], values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast["mAP"], slow["mAP"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_fast_matches_reference_crowded_video(seed):
    """Many instances and predictions in one video: long greedy chains, shared GT."""
    rng = np.random.default_rng(1000 + seed)
    starts = np.sort(rng.uniform(0, 200, 80))
    gt = make_gt({"v": [(str(rng.choice(["A", "B"])), s, s + rng.uniform(0.5, 6)) for s in starts]})
    rows = []
    for _ in range(600):
        s = float(rng.uniform(0, 200))
        rows.append(("v", str(rng.choice(["A", "B"])), float(rng.integers(0, 50)) / 50,
                     s, s + float(rng.uniform(0.2, 8))))
    fast = evaluate_detection(gt, make_preds(rows))
    slow = evaluate_detection_loop(gt, make_preds(rows))
    for label, values in slow["ap_per_class"].items():
        np.testing.assert_allclose(fast["ap_per_class"][label], values, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- bad input

GOOD_GT = make_gt({"vid_a": [("A", 0, 10)], "vid_b": [("B", 0, 10)]},
                  others={"train_x": "train"})

# 'Z' is a class of the train subset only
TRAIN_ONLY_CLASS = {"database": {
    "vid_a": {"subset": "test", "annotations": [{"label": "A", "segment": [0, 1]}]},
    "t": {"subset": "train", "annotations": [{"label": "Z", "segment": [0, 1]}]}}}


def one_pred(**changes):
    pred = {"label": "A", "score": 0.5, "segment": [0, 10]}
    pred.update(changes)
    return {"results": {"vid_a": [pred]}}


@pytest.mark.parametrize("gt, preds, pattern", [
    (GOOD_GT, one_pred(label="Z"), r"video 'vid_a'.*label 'Z'"),
    (TRAIN_ONLY_CLASS, one_pred(label="Z"), r"label 'Z' is not a class of subset 'test'"),
    (GOOD_GT, one_pred(segment=[5, 3]), r"vid_a.*ends before it starts"),
    (GOOD_GT, one_pred(segment=[float("nan"), 3]), r"vid_a.*not finite"),
    (GOOD_GT, one_pred(segment=[1]), r"vid_a.*malformed segment"),
    (GOOD_GT, one_pred(segment="12"), r"vid_a.*malformed segment"),
    (GOOD_GT, one_pred(score="high"), r"vid_a.*score 'high'"),
    (GOOD_GT, one_pred(score=float("nan")), r"vid_a.*score is not finite"),
    (GOOD_GT, {"results": {"vid_a": [{"score": 1, "segment": [0, 1]}]}}, r"vid_a.*missing 'label'"),
    (GOOD_GT, {"results": {"vid_a": "oops"}}, r"vid_a.*not a list"),
    (GOOD_GT, {"version": "x"}, r"no 'results'"),
    (GOOD_GT, {"results": {"nowhere": [{"label": "A", "score": 1, "segment": [0, 1]}]}},
     r"video 'nowhere'.*not in the ground truth"),
    ({"version": 1}, one_pred(), r"no 'database'"),
    (make_gt({"vid_a": [("A", 3, 1)]}), one_pred(), r"vid_a.*annotation 0.*ends before"),
    (make_gt({"vid_a": [("A", 0, 1)]}, subset="train"), one_pred(), r"no video of subset 'test'"),
    ({"database": {"vid_a": {"annotations": []}}}, one_pred(), r"vid_a.*no 'subset'"),
    ([1, 2], one_pred(), r"path or a dict"),
])
def test_bad_input_messages(gt, preds, pattern):
    with pytest.raises(EvalError, match=pattern) as info:
        evaluate_detection(gt, preds)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("tious", [(), (1.5,), ("x",), (float("nan"),)])
def test_bad_thresholds(tious):
    with pytest.raises(EvalError, match="tIoU"):
        evaluate_detection(GOOD_GT, one_pred(), tiou_thresholds=tious)


def test_bad_files_name_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": {')
    with pytest.raises(EvalError, match=r"broken\.json is not valid JSON"):
        evaluate_detection(GOOD_GT, broken)
    with pytest.raises(EvalError, match=r"cannot read ground truth file .*missing\.json"):
        evaluate_detection(tmp_path / "missing.json", one_pred())
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(EvalError, match=r"list\.json: the top level must be a JSON object"):
        evaluate_detection(GOOD_GT, str(tmp_path / "list.json"))


# ---------------------------------------------------------------- command line

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "eval", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli(tmp_path):
    gt, preds, out = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "out.json"
    gt.write_text(json.dumps(GOOD_GT))
    preds.write_text(json.dumps({"results": {
        "vid_a": [{"label": "A", "score": 0.9, "segment": ["0", "10"]}],
        "train_x": [{"label": "B", "score": 0.9, "segment": [0, 10]}]}}))
    proc = run_cli(gt, preds, "--tiou", "0.3", "0.5", "0.7", "--json", out, "--per-class")
    assert proc.returncode == 0, proc.stderr
    assert "mAP" in proc.stdout and "0.3:0.7" not in proc.stdout  # 0.4, 0.6 not given
    assert proc.stderr.count("warning:") == 1 and "1 video" in proc.stderr
    result = json.loads(out.read_text())
    assert result["tiou"] == [0.3, 0.5, 0.7]
    assert result["mAP"] == [0.5, 0.5, 0.5]  # A: 1, B: 0 (its only prediction is elsewhere)
    assert result["ap_per_class"] == {"A": [1.0] * 3, "B": [0.0] * 3}
    assert result["num_unknown_videos"] == 1


def test_cli_error_exit_code(tmp_path):
    gt, preds = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(GOOD_GT))
    preds.write_text("not json")
    proc = run_cli(gt, preds)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "pred.json" in proc.stderr
    assert "Traceback" not in proc.stderr
