"""scripts/prepare_thumos14.py: official per-class annotation files -> gt.json and splits."""
import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join("scripts", "prepare_thumos14.py")

REAL_GT = os.path.join(ROOT, "dataset", "THUMOS14", "gt.json")  # shipped with the repository


def write(folder, name, text):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", newline="") as f:
        f.write(text)


def prepare(*args):
    """Run the script as a user would; the finished process (returncode, stdout, stderr)."""
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def succeeds(*args):
    proc = prepare(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def fails(*args, code=2):
    proc = prepare(*args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


def read_outputs(out):
    with open(os.path.join(out, "gt.json")) as f:
        gt = json.load(f)
    splits = {}
    for subset in ("train", "test"):
        with open(os.path.join(out, f"split_{subset}.txt")) as f:
            splits[subset] = f.read()
    return gt, splits


@pytest.fixture
def official(tmp_path):
    """A small copy of the official layout: two folders, CRLF and tabs as in the real files."""
    val = tmp_path / "TH14_Temporal_annotations_validation" / "annotation"
    test = tmp_path / "TH14_Temporal_Annotations_Test" / "annotations" / "annotation"
    write(val, "HighJump_val.txt", "video_validation_0000002 18.6 24.8\r\nvideo_validation_0000001  3.0\t5.5\r\n")
    write(val, "Diving_val.txt", "video_validation_0000001 10.1 12.0\n\nvideo_validation_0000001 10.1 12.0\n")
    write(val, "CliffDiving_val.txt", "video_validation_0000001 10.1 12.0\n")
    write(val, "Ambiguous_val.txt", "video_validation_0000002 1.0 2.0\n")
    write(test, "HighJump_test.txt", "video_test_0000004 0.2 1.1\nvideo_test_0000270 5 6\n")
    write(test, "Diving_test.txt", "video_test_0000003 7.0 9.25\n")
    write(test, "CliffDiving_test.txt", "video_test_0000003 7.0 9.25\n")
    write(test, "Ambiguous_test.txt", "video_test_0001292 0.0 30.0\n")
    return str(val), str(test)


EXPECTED_DATABASE = {
    "video_validation_0000001": {"subset": "train", "annotations": [
        {"segment": ["10.1", "12.0"], "label": "CliffDiving"},
        {"segment": ["10.1", "12.0"], "label": "Diving"},
        {"segment": ["3.0", "5.5"], "label": "HighJump"}]},
    "video_validation_0000002": {"subset": "train", "annotations": [
        {"segment": ["18.6", "24.8"], "label": "HighJump"}]},
    "video_test_0000003": {"subset": "test", "annotations": [
        {"segment": ["7.0", "9.25"], "label": "CliffDiving"},
        {"segment": ["7.0", "9.25"], "label": "Diving"}]},
    "video_test_0000004": {"subset": "test", "annotations": [
        {"segment": ["0.2", "1.1"], "label": "HighJump"}]},
}


def test_hand_written_case(official, tmp_path):
    val, test = official
    out = str(tmp_path / "THUMOS14")
    printed = succeeds("--val_dir", val, "--test_dir", test, "--out", out).stdout
    gt, splits = read_outputs(out)
    assert gt == {"database": EXPECTED_DATABASE}
    assert list(gt["database"]) == list(EXPECTED_DATABASE)  # train first, sorted
    assert splits["train"] == "video_validation_0000001\nvideo_validation_0000002\n"
    assert splits["test"] == "video_test_0000003\nvideo_test_0000004\n"
    assert "left out video_test_0000270" in printed
    assert "1 duplicate line(s)" in printed
    assert "Ambiguous_test.txt (not a class)" in printed
    assert "3 classes" in printed


def test_one_folder_and_keep_all(official, tmp_path):
    out = str(tmp_path / "out")
    succeeds("--annotations", tmp_path, "--out", out, "--exclude")
    gt, splits = read_outputs(out)
    assert gt["database"]["video_test_0000270"] == {
        "subset": "test", "annotations": [{"segment": ["5", "6"], "label": "HighJump"}]}
    assert "video_test_0001292" not in gt["database"]  # only in Ambiguous_test.txt
    assert splits["test"].split() == ["video_test_0000003", "video_test_0000004", "video_test_0000270"]
    del gt["database"]["video_test_0000270"]
    assert gt == {"database": EXPECTED_DATABASE}


def test_refuses_to_overwrite(official, tmp_path):
    val, test = official
    out = tmp_path / "out"
    out.mkdir()
    (out / "gt.json").write_text("{}")
    proc = fails("--val_dir", val, "--test_dir", test, "--out", out, code=2)
    assert "--overwrite" in proc.stderr
    assert (out / "gt.json").read_text() == "{}"
    succeeds("--val_dir", val, "--test_dir", test, "--out", out, "--overwrite")
    assert read_outputs(str(out))[0] == {"database": EXPECTED_DATABASE}


@pytest.mark.parametrize("line, message", [
    ("video_validation_0000009 1.0", "expected 'video start end'"),
    ("video_validation_0000009 1.0 2.0 3.0", "expected 'video start end'"),
    ("video_validation_0000009 a 2.0", "start time 'a' is not a number"),
    ("video_validation_0000009 1.0 nan", "end time 'nan' must be a finite number"),
    ("video_validation_0000009 -1.0 2.0", "must be a finite number >= 0"),
    ("video_validation_0000009 5.0 2.0", "ends (2.0) before it starts (5.0)"),
])
def test_malformed_line_names_file_and_line(official, tmp_path, line, message):
    val, test = official
    write(val, "LongJump_val.txt", "video_validation_0000008 1.0 2.0\n\n" + line + "\n")
    out = tmp_path / "out"
    err = fails("--val_dir", val, "--test_dir", test, "--out", out, code=2).stderr
    assert os.path.join(val, "LongJump_val.txt") + ", line 3:" in err
    assert message in err
    assert not out.exists()


def test_usage_errors(official, tmp_path):
    val, test = official
    o = tmp_path / "o"
    # one line `error: ...`, exit status 2, as for every bad input
    proc = fails("--val_dir", val, "--out", o)
    assert proc.stderr == "error: give --annotations DIR, or both --val_dir DIR and --test_dir DIR\n"
    proc = fails("--annotations", val, "--test_dir", test, "--out", o)
    assert proc.stderr == "error: give either --annotations or --val_dir/--test_dir, not both\n"
    # no test files below the validation folder
    assert "no <Class>_test.txt file found" in fails("--val_dir", val, "--test_dir", val, "--out", o).stderr
    write(test, "HighJump_test.txt", "video_validation_0000001 1 2\n")  # a video in both subsets
    assert "also in the validation files" in fails("--val_dir", val, "--test_dir", test, "--out", o).stderr
    assert not o.exists()


def instance_set(database):
    return {(v, a["label"], float(a["segment"][0]), float(a["segment"][1]))
            for v, entry in database.items() for a in entry["annotations"]}


def test_round_trip_of_the_real_annotations(tmp_path):
    with open(REAL_GT) as f:
        real = json.load(f)["database"]
    # per-class files as the official release has them (CliffDiving instances also in Diving)
    lines = defaultdict(list)
    for video, entry in real.items():
        suffix = "val" if entry["subset"] == "train" else "test"
        for a in entry["annotations"]:
            lines[f"{a['label']}_{suffix}.txt"].append(f"{video} {a['segment'][0]} {a['segment'][1]}")
    folder = tmp_path / "official"
    for name, rows in lines.items():
        write(folder, name, "\n".join(rows) + "\n")
    write(folder, "Ambiguous_test.txt", "video_test_0000004 40.0 42.0\n")
    write(folder, "HighJump_test.txt", "video_test_0001496 1.0 2.0\n" + "\n".join(lines["HighJump_test.txt"]) + "\n")
    out = str(tmp_path / "THUMOS14")
    printed = succeeds("--annotations", folder, "--out", out).stdout
    written, split_text = read_outputs(out)
    splits = {s: text.splitlines() for s, text in split_text.items()}
    # the split files list exactly the videos of gt.json's subsets, train first, each sorted
    assert list(written["database"]) == splits["train"] + splits["test"]
    for subset in ("train", "test"):
        assert splits[subset] == sorted(splits[subset])
        assert all(written["database"][v]["subset"] == subset for v in splits[subset])
    assert instance_set(written["database"]) == instance_set(real)
    assert {v: e["subset"] for v, e in written["database"].items()} == {v: e["subset"] for v, e in real.items()}
    shipped = os.path.dirname(REAL_GT)
    for subset in ("train", "test"):
        with open(os.path.join(shipped, f"split_{subset}.txt")) as f:
            assert split_text[subset].split() == f.read().split()
    assert len(splits["train"]) == 200 and len(splits["test"]) == 210
    assert "train (validation videos): 200 videos, 3007 instances; test: 210 videos, 3311 instances" in printed
    counts = {s: sum(len(e["annotations"]) for e in written["database"].values() if e["subset"] == s)
              for s in ("train", "test")}
    assert counts == {"train": 3007, "test": 3311}
