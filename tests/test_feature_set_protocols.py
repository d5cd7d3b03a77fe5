"""Converted public sets are scored as their own evaluators score them: small files written in
each repository's real layout (W-TALC THUMOS14 with a test segment past its `duration`;
ACM-Net THUMOS14 with durations of frames / 30 for a 25 fps video; A2CL-PT THUMOS14 with
101-style class list and label-only annotations; ActionFormer with duplicates and a test
video without features). The converted test ground truth must equal the one the source's
evaluator reads, and the printed command, run for a few steps, must print a mAP table at
the benchmark's thresholds."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import main
from dataset import load_dataset
from evaluation import Evaluator
from options import parse_args
from public_sets.a2clpt import A2CLPTReader
from public_sets.acmnet import ACMNetReader
from public_sets.actionformer import ActionFormerReader
from public_sets.common import AmbiguousBenchmark, RELEASE_LEFT_OUT, resolve_benchmark
from public_sets.convert import convert, train_command
from public_sets.wtalc import WTALCReader
from test_convert_features import feats, write_wtalc_thumos
from utils import run_entry_point

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "convert_features.py")
THUMOS_TIOUS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
FEW_STEPS = ["--num_segments", "16", "--hidden_dim", "16", "--batch_size", "4", "--num_iters", "2",
             "--eval_every", "2", "--device", "cpu", "--no_progress", "--seed", "0"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def convert_cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *args, "--no_progress"], capture_output=True, text=True, cwd=ROOT)


def printed_command(report):
    """The main.py arguments of the command the converter prints (and records)."""
    words = train_command(report).split()
    assert words[:2] == ["python", "main.py"]
    return words[2:]


def run_printed_command(report, run, capsys):
    """main.py as printed by the converter, for two steps: (results, what it printed)."""
    capsys.readouterr()
    results = main.main(printed_command(report) + FEW_STEPS + ["--output_path", run])
    return results, capsys.readouterr().out


def converted_test_gt(out, subset="test"):
    """{video: sorted [(label, start, end)]} of the converted gt.json's evaluated subset."""
    with open(os.path.join(out, "gt.json")) as f:
        db = json.load(f)["database"]
    return {v: sorted((a["label"], *a["segment"]) for a in e["annotations"])
            for v, e in db.items() if e["subset"] == subset}


def assert_mAP_table(results, printed, tious=THUMOS_TIOUS):
    assert results["tiou"] == pytest.approx(tious)
    assert "Detection mAP (%) on subset 'test'" in printed
    row = next(line for line in printed.splitlines() if line.startswith("tIoU"))
    assert [float(t) for t in row.split()[1:]] == tious


# ----------------------------------------------------------------------------- W-TALC
def wtalc_scored_gt(ann, exclude):
    """The ground truth W-TALC's detectionMAP.py scores: test-subset rows with segments."""
    names = [v.decode() for v in np.load(os.path.join(ann, "videoname.npy"))]
    subset = [s.decode() for s in np.load(os.path.join(ann, "subset.npy"))]
    segments = np.load(os.path.join(ann, "segments.npy"), allow_pickle=True, encoding="latin1")
    labels = np.load(os.path.join(ann, "labels.npy"), allow_pickle=True, encoding="latin1")
    return {v: sorted((lab, float(s), float(e)) for lab, (s, e) in zip(labels[i], segments[i]))
            for i, v in enumerate(names) if subset[i] == "test" and len(segments[i]) and v not in exclude}


def test_wtalc_thumos_ground_truth_is_the_evaluators_and_the_command_scores_it(tmp_path, rng, capsys):
    features, ann, _ = write_wtalc_thumos(str(tmp_path), rng)
    out = str(tmp_path / "out")
    report = convert(WTALCReader(features, ann), out, progress=False)
    # video_test_0000001 has a segment past its duration (19.2 s), as 814 and 1081 in W-TALC's
    # files; 0000002-0000004 have no usable features: all are scored, as W-TALC scores them
    assert converted_test_gt(out) == wtalc_scored_gt(ann, RELEASE_LEFT_OUT)
    assert ("Curling", 5.0, 99.0) in converted_test_gt(out)["video_test_0000001"]
    results, printed = run_printed_command(report, str(tmp_path / "run"), capsys)
    assert_mAP_table(results, printed)
    assert results["num_ground_truth"] == 6 and results["num_videos"] == 1
    assert results["num_videos_without_features"] == 3 and results["num_instances_without_features"] == 3
    assert "3 video(s) of the subset have no features: their 3 instance(s) count as misses" in printed


# ----------------------------------------------------------------------------- ACM-Net THUMOS14
def write_acmnet_thumos(root, rng):
    """ACM-Net's data/THUMOS14: gt.json with duration = frames / 30 for every video, so the
    25 fps test video (1000 frames, 40 s) reads 33.33 s while its features (62 snippets of
    16 frames, 39.68 s) and annotations (to 38.5 s) run longer."""
    os.makedirs(root)
    videos = {  # name, split, subset, frames, fps, annotations
        "video_validation_0000051": ("train", "val", 600, 30, [["BMX", [2.0, 5.5]]]),
        "video_validation_0000052": ("train", "val", 500, 25, [["Archery", [1.0, 3.0]], ["Archery", [8.0, 12.0]]]),
        "video_test_0000950": ("test", "test", 1000, 25, [["Curling", [3.0, 6.0]], ["Curling", [30.0, 38.5]],
                                                          ["Curling", [3.0, 6.0]]]),
        "video_test_0000951": ("test", "test", 480, 30, [["BMX", [1.0, 4.0]]]),
    }
    db = {}
    for video, (split, subset, frames, fps, anns) in videos.items():
        db[video] = {"subset": subset, "duration": frames / 30, "frames": frames,
                     "annotations": [{"label": lab, "segment": seg} for lab, seg in anns]}
        os.makedirs(os.path.join(root, split), exist_ok=True)
        # 16-frame snippets of the video resampled to 25 fps (ACM-Net config/model_config.py)
        np.save(os.path.join(root, split, video + ".npy"), feats(rng, int(frames / fps * 25 / 16)))
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": db}, f)
    for split in ("train", "test"):
        with open(os.path.join(root, f"split_{split}.txt"), "w") as f:
            f.write("".join(v + "\n" for v, d in videos.items() if d[0] == split))
    return db


def test_acmnet_thumos_frames_over_30_durations(tmp_path, rng, capsys):
    root = str(tmp_path / "THUMOS14")
    db = write_acmnet_thumos(root, rng)
    out = str(tmp_path / "out")
    report = convert(ACMNetReader(root), out, progress=False)
    # ACM-Net's evaluator (utils/net_evaluation.py) scores every annotation of subset "test", duplicates too
    acmnet_scored = {v: sorted((a["label"], *a["segment"]) for a in e["annotations"])
                     for v, e in db.items() if e["subset"] == "test"}
    assert converted_test_gt(out) == acmnet_scored
    gt = json.load(open(os.path.join(out, "gt.json")))["database"]
    # the source's inconsistency: reported, the duration written covers features and annotations
    assert gt["video_test_0000950"]["source_duration"] == pytest.approx(1000 / 30)
    assert gt["video_test_0000950"]["duration"] == pytest.approx(62 * 0.64)
    assert gt["video_validation_0000052"]["duration"] == pytest.approx(31 * 0.64)   # 25 fps too
    assert gt["video_validation_0000051"]["duration"] == 20.0    # 30 fps: frames / 30 is right
    assert "duration" in gt["video_test_0000951"] and "source_duration" not in gt["video_test_0000951"]
    assert sorted(report.durations) == ["video_test_0000950", "video_validation_0000052"]
    assert report.durations["video_test_0000950"]["why"] == "annotations end at 38.5 s, features span 39.68 s"
    results, printed = run_printed_command(report, str(tmp_path / "run"), capsys)
    assert_mAP_table(results, printed)
    assert results["num_ground_truth"] == 4


# ----------------------------------------------------------------------------- A2CL-PT THUMOS14
LIST_CLASSES = ["ApplyEyeMakeup", "BaseballPitch", "Billiards", "CricketBowling", "YoYo"]   # UCF101-style


def write_a2clpt_thumos(root, rng):
    """A2CL-PT's dataset/THUMOS14/annotation.json: list_classes of the UCF101 kind, training
    ("train") videos with temporal annotations or with a label only, test videos ("val")
    annotated, unannotated, or absent from feature_val.npy."""
    folder = os.path.join(root, "THUMOS14")
    os.makedirs(folder)
    db = {
        "video_validation_0000051": {"subset": "train", "duration": 12.8, "annotations": [
            {"label": "BaseballPitch", "segment": [1.0, 3.0]}]},
        "video_validation_0000052": {"subset": "train", "duration": 9.6, "annotations": [
            {"label": "Billiards", "segment": [2.0, 4.0]}, {"label": "CricketBowling", "segment": [5.0, 6.0]}]},
        "video_validation_0000901": {"subset": "train", "duration": 7.0, "annotations": [{"label": "ApplyEyeMakeup"}]},
        "video_validation_0000902": {"subset": "train", "duration": 7.0, "annotations": [
            {"label": "YoYo"}, {"label": "ApplyEyeMakeup"}]},
        "video_test_0000001": {"subset": "val", "duration": 6.0, "annotations": []},
        "video_test_0000004": {"subset": "val", "duration": 12.0, "annotations": [
            {"label": "CricketBowling", "segment": [0.5, 1.5]}, {"label": "Billiards", "segment": [4.0, 7.5]}]},
        "video_test_0000006": {"subset": "val", "duration": 20.0, "annotations": [
            {"label": "BaseballPitch", "segment": [10.0, 12.0]}]},
        "video_test_0001292": {"subset": "val", "duration": 20.0, "annotations": [
            {"label": "BaseballPitch", "segment": [1.0, 2.0]}]},
    }
    lengths = {"video_validation_0000051": 20, "video_validation_0000052": 15, "video_validation_0000901": 10,
               "video_validation_0000902": 10, "video_test_0000001": 9, "video_test_0000004": 18,
               "video_test_0001292": 30}          # video_test_0000006: no features
    train = {v: feats(rng, n) for v, n in lengths.items() if "validation" in v}
    val = {v: feats(rng, n) for v, n in lengths.items() if "test" in v}
    files = [os.path.join(root, "feature_train.npy"), os.path.join(root, "feature_val.npy")]
    np.save(files[0], train, allow_pickle=True)
    np.save(files[1], val, allow_pickle=True)
    ann = os.path.join(folder, "annotation.json")
    with open(ann, "w") as f:
        json.dump({"database": db, "list_classes": LIST_CLASSES,
                   "miscellany": {"fps_extracted": 25, "len_feature_chunk": 16},
                   "set_ambiguous": {"video_test_0000004": [[8.0, 9.0]]}}, f)
    return files, ann, db


def a2clpt_annotated_test(db, exclude):
    """The evaluated ground truth of the paper protocol: the temporally annotated test videos."""
    return {v: sorted((a["label"], *a["segment"]) for a in e["annotations"])
            for v, e in db.items() if e["subset"] == "val" and e["annotations"] and v not in exclude}


def test_a2clpt_thumos_paper_protocol(tmp_path, rng, capsys):
    files, ann, db = write_a2clpt_thumos(str(tmp_path), rng)
    out = str(tmp_path / "out")
    report = convert(A2CLPTReader(files, ann), out, progress=False)
    assert converted_test_gt(out) == a2clpt_annotated_test(db, RELEASE_LEFT_OUT)
    assert open(os.path.join(out, "classes.txt")).read().split() == ["BaseballPitch", "Billiards", "CricketBowling"]
    assert open(os.path.join(out, "split_train.txt")).read().split() == ["video_validation_0000051",
                                                                         "video_validation_0000052"]
    assert open(os.path.join(out, "split_test.txt")).read().split() == ["video_test_0000004"]
    record = json.load(open(os.path.join(out, "conversion.json")))
    assert record["benchmark"] == "thumos14" and record["source"]["protocol"] == "paper"
    assert sorted(record["skipped"]["label-only annotations (the paper protocol trains on temporally "
                                    "annotated videos)"]) == ["video_validation_0000901", "video_validation_0000902"]
    assert record["skipped"]["no annotation"] == ["video_test_0000001"]
    assert record["missing_features"] == {"video_test_0000006": {"reason": "no feature file", "instances": 1}}
    assert record["train_command"] == "python main.py --dataset thumos14 --data_path " + out
    results, printed = run_printed_command(report, str(tmp_path / "run"), capsys)
    assert_mAP_table(results, printed)
    assert results["num_videos_without_features"] == 1 and results["num_ground_truth"] == 3


def test_a2clpt_thumos_own_training_on_every_video_and_class(tmp_path, rng, capsys):
    files, ann, db = write_a2clpt_thumos(str(tmp_path), rng)
    out = str(tmp_path / "out")
    report = convert(A2CLPTReader(files, ann, protocol="a2clpt"), out, progress=False)
    assert converted_test_gt(out) == a2clpt_annotated_test(db, RELEASE_LEFT_OUT)
    gt = json.load(open(os.path.join(out, "gt.json")))["database"]
    assert gt["video_validation_0000902"] == {"subset": "train", "annotations": [], "duration": 7.0,
                                              "labels": ["ApplyEyeMakeup", "YoYo"]}
    cfg = parse_args(printed_command(report) + FEW_STEPS + ["--output_path", str(tmp_path / "x")])
    classes, train, _ = load_dataset(cfg)
    assert classes == LIST_CLASSES and len(train) == 4
    row = train.labels[train.names.index("video_validation_0000902")]
    assert [classes[i] for i in np.flatnonzero(row)] == ["ApplyEyeMakeup", "YoYo"]   # dataset.video_labels
    results, printed = run_printed_command(report, str(tmp_path / "run"), capsys)
    assert_mAP_table(results, printed)
    assert results["classes"] == ["BaseballPitch", "Billiards", "CricketBowling"]   # the test subset's classes


# ----------------------------------------------------------------------------- ActionFormer
def write_actionformer_thumos(root, rng):
    """annotations/thumos14.json: a test video whose annotations hold an exact duplicate, a
    duplicate within 1 ms and a zero-length one (ActionFormer's evaluator removes the three),
    and a test video without a feature file."""
    fdir = os.path.join(root, "i3d_features")
    os.makedirs(fdir)
    ann = lambda label, s, e, i: {"label": label, "segment": [s, e], "label_id": i}
    db = {"video_validation_0000051": {"subset": "Validation", "duration": 20.0, "fps": 30.0,
                                       "annotations": [ann("Archery", 2.0, 3.5, 0)]},
          "video_validation_0000052": {"subset": "Validation", "duration": 12.0, "fps": 30.0,
                                       "annotations": [ann("BMX", 1.0, 2.0, 1)]},
          "video_test_0000004": {"subset": "Test", "duration": 30.0, "fps": 25.0, "annotations": [
              ann("BMX", 1.0, 4.0, 1), ann("BMX", 1.0, 4.0, 1), ann("BMX", 1.0004, 3.9996, 1),
              ann("Archery", 1.0, 4.0, 0), ann("BMX", 9.0, 9.0, 1), ann("BMX", 10.0, 12.0, 1)]},
          "video_test_0000005": {"subset": "Test", "duration": 30.0, "fps": 25.0,
                                 "annotations": [ann("BMX", 2.0, 5.0, 1)]}}
    for video, L in (("video_validation_0000051", 146), ("video_validation_0000052", 86), ("video_test_0000004", 184)):
        np.save(os.path.join(fdir, video + ".npy"), feats(rng, L))
    os.makedirs(os.path.join(root, "annotations"))
    path = os.path.join(root, "annotations", "thumos14.json")
    with open(path, "w") as f:
        json.dump({"version": "Thumos14-30fps", "database": db}, f)
    return fdir, path


# What ActionFormer's libs/utils/metrics.py scores for these files: every video of the json's
# test subset, its annotations after remove_duplicate_annotations.
ACTIONFORMER_SCORED = {
    "video_test_0000004": sorted([("BMX", 1.0, 4.0), ("Archery", 1.0, 4.0), ("BMX", 10.0, 12.0)]),
    "video_test_0000005": [("BMX", 2.0, 5.0)]}


def test_actionformer_ground_truth_is_its_evaluators(tmp_path, rng):
    fdir, ann = write_actionformer_thumos(str(tmp_path), rng)
    out = str(tmp_path / "out")
    report = convert(ActionFormerReader(fdir, ann), out, progress=False)
    assert report.benchmark == "thumos14"            # from the name thumos14.json
    assert converted_test_gt(out) == ACTIONFORMER_SCORED
    assert report.duplicates == {"video_test_0000004": 3}
    assert report.missing_features == {"video_test_0000005": {"reason": "no feature file", "instances": 1}}


class Oracle(torch.nn.Module):
    """Not used for its output: evaluation is given the inferred detections directly."""
    localization_branch = "supp"


@pytest.mark.parametrize("drop_missing, expected", [(False, 2 / 3), (True, 1.0)])
def test_a_video_without_features_counts_as_misses(tmp_path, rng, drop_missing, expected):
    """Perfect detections on the one test video with features: BMX has 3 instances when the
    video without features stays in the ground truth (recall 2/3 at precision 1: AP 2/3)."""
    fdir, ann = write_actionformer_thumos(str(tmp_path), rng)
    out = str(tmp_path / "out")
    convert(ActionFormerReader(fdir, ann), out, progress=False, drop_missing=drop_missing)
    cfg = parse_args(["--dataset", "thumos14", "--data_path", out, "--output_path", str(tmp_path / "run")])
    classes, _, test_set = load_dataset(cfg, splits=("test",))
    evaluator = Evaluator(cfg, test_set, classes)
    perfect = [{"label": label, "segment": [s, e], "score": 1.0}
               for label, s, e in ACTIONFORMER_SCORED["video_test_0000004"]]
    inferred = {"results": {"video_test_0000004": perfect}, "scores": test_set.labels.astype(float),
                "predicted": [np.flatnonzero(test_set.labels[0])]}
    results = evaluator(Oracle(), torch.device("cpu"), inferred=inferred)
    assert results["ap_per_class"]["BMX"] == pytest.approx([expected] * 9)
    assert results["ap_per_class"]["Archery"] == pytest.approx([1.0] * 9)
    assert results["num_videos_without_features"] == (0 if drop_missing else 1)


# ----------------------------------------------------------------------------- the benchmark, bad input
def test_the_benchmark_is_said_when_the_file_names_do_not_say_it_and_drop_missing(tmp_path, rng):
    fdir, ann = write_actionformer_thumos(str(tmp_path), rng)
    renamed = os.path.join(os.path.dirname(ann), "annotations.json")
    os.rename(ann, renamed)
    out = str(tmp_path / "out")
    done = convert_cli("actionformer", "--features", fdir, "--annotations", renamed, "--out", out)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: cannot tell the benchmark")
    assert "--dataset thumos14|anet12|anet13" in done.stderr
    assert not os.path.exists(out)
    done = convert_cli("actionformer", "--features", fdir, "--annotations", renamed, "--out", out,
                       "--dataset", "thumos14", "--drop_missing")
    assert done.returncode == 0, done.stderr
    assert f"python main.py --dataset thumos14 --data_path {out}\n" in done.stdout
    assert "removed 3 duplicate annotation(s), as the source's evaluator does: video_test_0000004" in done.stdout
    assert ("1 evaluated video(s) without usable features, 1 instance(s): left out of the ground truth "
            "(--drop_missing): video_test_0000005") in done.stdout
    record = json.load(open(os.path.join(out, "conversion.json")))
    assert record["benchmark"] == "thumos14" and record["drop_missing"] is True
    assert list(converted_test_gt(out)) == ["video_test_0000004"]
    # names that say two benchmarks are no evidence either
    with pytest.raises(AmbiguousBenchmark):
        resolve_benchmark(None, ["Thumos14reduced-I3D-JOINTFeatures.npy", "ActivityNet1.2-Annotations"])
    assert resolve_benchmark(None, ["data/anet_1.3/annotations/anet1.3_i3d_filtered.json"]) == "anet13"
    assert resolve_benchmark(None, ["data/ActivityNet13"]) == "anet13"


def test_out_naming_a_file_is_refused_in_one_line(tmp_path, rng):
    features, ann, _ = write_wtalc_thumos(str(tmp_path), rng)
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    done = convert_cli("wtalc", "--features", features, "--annotations", ann, "--out", str(target))
    assert done.returncode == 2
    assert done.stderr == f"error: --out {target} is a file, not a folder; choose another --out\n"
    assert target.read_text() == "mine\n"


# ----------------------------------------------------------------------------- ambiguous segments
def test_ambiguous_segments_are_optional_in_the_evaluator(tmp_path, rng, capsys):
    """W-TALC's Ambiguous_test.txt (video_test_0000001 3.0-4.0 s), written beside gt.json:
    `python -m eval --ambiguous` removes the predictions overlapping it, as W-TALC does."""
    from eval import evaluate_detection
    from eval.__main__ import main as eval_main
    features, ann, _ = write_wtalc_thumos(str(tmp_path), rng)
    out = str(tmp_path / "out")
    convert(WTALCReader(features, ann), out, progress=False)
    gt, ambiguous = os.path.join(out, "gt.json"), os.path.join(out, "Ambiguous_test.txt")
    preds = {"results": {"video_test_0000001": [
        {"label": "Curling", "segment": [3.2, 3.8], "score": 0.9},      # inside the ambiguous segment
        {"label": "Curling", "segment": [5.0, 99.0], "score": 0.8}]}}   # one of 3 Curling instances
    plain = evaluate_detection(gt, preds, tiou_thresholds=[0.5])
    assert plain["ap_per_class"]["Curling"] == pytest.approx([1 / 6])     # a false positive ranked first
    assert "num_predictions_ambiguous" not in plain
    filtered = evaluate_detection(gt, preds, tiou_thresholds=[0.5], ambiguous=ambiguous)
    assert filtered["ap_per_class"]["Curling"] == pytest.approx([1 / 3])
    assert filtered["num_predictions_ambiguous"] == 1
    path = str(tmp_path / "predictions.json")
    json.dump(preds, open(path, "w"))
    capsys.readouterr()
    result = eval_main([gt, path, "--tiou", "0.5", "--ambiguous", ambiguous])
    assert result["num_predictions_ambiguous"] == 1 and result["ap_per_class"]["Curling"] == pytest.approx([1 / 3])
    assert f"1 prediction(s) inside ambiguous segments of {ambiguous} removed before scoring" in capsys.readouterr().out
    (tmp_path / "bad.txt").write_text("video_test_0000001 3.0\n")
    with pytest.raises(SystemExit) as e:
        run_entry_point(eval_main, [gt, path, "--ambiguous", str(tmp_path / "bad.txt")])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'bad.txt'}, line 1: expected 'video start end', "
                                       "got 'video_test_0000001 3.0'\n")
