"""`python -m eval GT.json PRED.json`: test.py's predictions score as they are (classes
without ground truth in the subset are counted, not scored), a file that leaves most
ground-truth videos without prediction is named in a warning, and the ambiguous-segment
filter (--ambiguous) removes exactly what W-TALC's evaluator removes. Values hand-computed."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from eval.__main__ import main as eval_main


def det(label, score, start, end):
    return {"label": label, "score": score, "segment": [start, end]}


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def database(subset, videos, others=()):
    """{"database": ...} of videos {id: [(label, start, end)]} in `subset`, and videos of
    the training subset with one instance of class 'Z' each."""
    db = {v: {"subset": subset, "annotations": [{"label": l, "segment": [s, e]} for l, s, e in anns]}
          for v, anns in videos.items()}
    db.update({v: {"subset": "train", "annotations": [{"label": "Z", "segment": [0, 1]}]} for v in others})
    return {"database": db}


def run_eval(argv, capsys):
    """(result dict, stdout, stderr) of `python -m eval`, run in this process."""
    result = eval_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return result, out, err


def test_predictions_of_classes_without_ground_truth_in_the_subset_are_counted_not_scored(tmp_path, capsys):
    gt = write(tmp_path / "gt.json", database("test", {"vid_a": [("A", 0, 10)], "vid_b": [("B", 0, 10)]},
                                              others=["t1"]))
    # as test.py writes them: a detection for every class of the class list, 'Z' included
    preds = write(tmp_path / "pred.json", {"results": {
        "vid_a": [det("A", 0.9, 0, 10), det("Z", 0.95, 0, 10)],
        "vid_b": [det("Z", 0.99, 0, 10), det("B", 0.5, 20, 30), det("B", 0.4, 0, 10)]}})
    out_json = tmp_path / "map.json"
    result, out, err = run_eval([gt, preds, "--tiou", "0.5", "--json", out_json], capsys)
    # A: one TP -> 1. B: FP (no overlap) then TP -> precision 0, 1/2 at recall 0, 1 -> 1/2.
    # Z, had it been scored on vid_a/vid_b, would not leave mAP at (1 + 1/2) / 2.
    assert result["mAP"] == pytest.approx([0.75])
    assert result["classes"] == ["A", "B"]
    assert result["num_predictions"] == 3 and result["num_predictions_unscored"] == 2
    assert "2 prediction(s) of 1 class(es) without ground truth in subset 'test' not scored: Z" in out
    assert err == ""
    assert json.loads(out_json.read_text())["num_predictions_unscored"] == 2


def test_cli_scores_test_py_predictions_with_exit_status_0(tmp_path):
    gt = write(tmp_path / "gt.json", database("test", {"vid_a": [("A", 0, 10)]}, others=["t1"]))
    preds = write(tmp_path / "pred.json", {"results": {"vid_a": [det("Archery", 0.9, 0, 10), det("A", 0.8, 0, 10)]}})
    proc = subprocess.run([sys.executable, "-m", "eval", gt, preds], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr      # was: error: label 'Archery' is not a class of subset 'test'
    assert "1 prediction(s) of 1 class(es) without ground truth in subset 'test' not scored: Archery" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("predicted, warned", [
    (["vid_0"], "3 of 4"),                   # most videos without prediction
    (["v_vid_0", "vid_1"], None),            # half: no warning ('v_vid_0' is vid_0)
    (["vid_0", "vid_1", "vid_2"], None),
])
def test_warning_when_most_ground_truth_videos_have_no_prediction(tmp_path, capsys, predicted, warned):
    gt = write(tmp_path / "gt.json", database("test", {f"vid_{i}": [("A", 0, 10)] for i in range(4)}))
    preds = write(tmp_path / "pred.json", {"results": {v: [det("A", 0.9, 0, 10)] for v in predicted}})
    _, _, err = run_eval([gt, preds], capsys)
    if warned:
        assert err.count("\n") == 1 and err.startswith(f"warning: {warned} ground-truth videos of subset 'test' "
                                                       "have no prediction in " + preds)
    else:
        assert err == ""


def test_unwritable_json_output_is_one_line_before_scoring(tmp_path, unwritable_dir):
    gt = write(tmp_path / "gt.json", database("test", {"vid_a": [("A", 0, 10)]}))
    preds = write(tmp_path / "pred.json", {"results": {"vid_a": [det("A", 0.9, 0, 10)]}})
    target = f"{unwritable_dir}/map.json"
    proc = subprocess.run([sys.executable, "-m", "eval", gt, preds, "--json", target], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: --json ") and "cannot be written" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_ambiguous_filter_keeps_touching_and_other_video_predictions(tmp_path, capsys):
    # ActivityNet-style ids: the ground truth and the ambiguous file name 'abc', the results 'v_abc'
    gt = write(tmp_path / "gt.json", database("validation", {"abc": [("A", 10, 20)], "xyz": [("A", 40, 50)]}))
    ambiguous = tmp_path / "Ambiguous_val.txt"
    ambiguous.write_text("abc 40 50\n")
    preds = write(tmp_path / "pred.json", {"results": {
        "v_abc": [det("A", 0.9, 30, 40),      # touches [40, 50] only: kept (W-TALC removes IoU > 0)
                  det("A", 0.8, 45, 55),      # overlaps [40, 50] of 'abc': removed
                  det("A", 0.6, 10, 20)],     # the ground truth of abc: TP
        "v_xyz": [det("A", 0.7, 40, 50)]}})   # another video, the same times: kept, TP
    result, out, _ = run_eval([gt, preds, "--subset", "validation", "--tiou", "0.5", "--ambiguous", ambiguous],
                              capsys)
    # Kept, by score: 0.9 FP, 0.7 TP, 0.6 TP; 2 positives. Precision 0, 1/2, 2/3 at recall
    # 0, 1/2, 1; envelope 2/3, 2/3, 2/3 -> AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3.
    # Wrong filters give other values: the touching one removed -> TP, TP -> 1; the v_abc
    # one kept -> FP, FP, TP, TP: precision 1/3, 1/2 at the two recall steps -> 1/2 * 1/2
    # + 1/2 * 1/2 = 1/2; xyz's removed too -> FP, TP: 1/2 * 1/2 = 1/4.
    assert result["mAP"] == pytest.approx([2 / 3], abs=1e-12)
    assert result["num_predictions_ambiguous"] == 1 and result["num_predictions"] == 3
    assert f"1 prediction(s) inside ambiguous segments of {ambiguous} removed before scoring" in out
