"""scripts/compare_features.py and feature_check.py on generated feature sets whose
differences are known: offsets, swapped streams, a scale, other lengths, missing videos."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import feature_check as fc
import main
import test as testing
from conftest import ROOT, TINY_ARGS, write_dataset

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import compare_features  # noqa: E402

DIM = 32


def random_set(seed=0, videos=("v1", "v2", "v3", "v4"), lengths=(30, 41, 25, 60)):
    """{video: {stream: (L, DIM)}}: non-negative, like I3D's pooled features, so that
    unrelated vectors still have a cosine near 0.75."""
    rng = np.random.default_rng(seed)
    return {v: {s: rng.random((L, DIM)).astype(np.float32) for s in fc.STREAMS} for v, L in zip(videos, lengths)}


def write_set(root, features, subset="test"):
    for video, streams in features.items():
        for stream, array in streams.items():
            folder = os.path.join(root, "features", subset, stream)
            os.makedirs(folder, exist_ok=True)
            np.save(os.path.join(folder, video + ".npy"), array)
    return str(root)


def compare(tmp_path, a, b, **kw):
    return fc.compare_sets(write_set(tmp_path / "A", a), write_set(tmp_path / "B", b, subset=kw.pop("subset", "test")),
                           **kw)


def entries(report, stream=None):
    return [e for e in report["videos"] if stream is None or e["stream"] == stream]


def test_identical_sets_agree_everywhere(tmp_path):
    a = random_set()
    # B's videos in another subset folder: matched by id all the same
    report = compare(tmp_path, a, a, subset="train")
    assert len(entries(report)) == 8
    for e in entries(report):
        assert e["lag"] == 0 and e["length_a"] == e["length_b"]
        assert e["cosine"] == pytest.approx(1) and e["cosine_p5"] == pytest.approx(1)
        assert e["norm_ratio"] == pytest.approx(1)
        assert e["cross_cosine"] < 0.85            # the other stream is unrelated
    assert report["summary"]["causes"] == [] and report["summary"]["warnings"] == []
    assert "no systematic difference found" in fc.format_report(report)


@pytest.mark.parametrize("lag", [1, -1, 3])
def test_an_offset_is_found_with_its_sign(tmp_path, lag):
    a = random_set()
    rng = np.random.default_rng(5)
    b = {}
    for v, streams in a.items():
        b[v] = {}
        for s, x in streams.items():
            pad = rng.random((abs(lag), DIM)).astype(np.float32)
            # B lags A by k > 0: A's vector t is B's t + k (B has k vectors more in front)
            b[v][s] = np.concatenate([pad, x[:-lag]]) if lag > 0 else np.concatenate([x[-lag:], pad])
    report = compare(tmp_path, a, b)
    for e in entries(report):
        assert e["lag"] == lag
        assert e["cosine"] == pytest.approx(1) and e["norm_ratio"] == pytest.approx(1)
    summary = report["summary"]
    assert summary["causes"] == ["offset"]
    assert summary["streams"]["rgb"]["lags"] == {f"{lag:+d}": 4}
    word = "lags" if lag > 0 else "leads"
    assert any(f"B {word} A" in w and f"by {abs(lag)} vector" in w and "4 of 4" in w for w in summary["warnings"])


def test_an_offset_beyond_max_lag_is_a_mismatch(tmp_path):
    a = random_set()
    b = {v: {s: np.concatenate([x[3:], x[:3]]) for s, x in streams.items()} for v, streams in a.items()}
    assert compare(tmp_path, a, b, max_lag=4)["videos"][0]["lag"] == -3
    report = compare(tmp_path / "small", a, b, max_lag=2)
    assert all(e["lag"] != -3 and e["cosine"] < 0.9 for e in entries(report))
    assert report["summary"]["causes"] == ["mismatched stream"]


def test_swapped_streams_are_named(tmp_path):
    a = random_set()
    b = {v: {"rgb": s["flow"], "flow": s["rgb"]} for v, s in a.items()}
    report = compare(tmp_path, a, b)
    for e in entries(report):
        assert e["cosine"] < 0.9 and e["cross_cosine"] == pytest.approx(1)
    summary = report["summary"]
    assert summary["causes"] == ["swapped"]
    assert "rgb and flow streams look swapped" in summary["warnings"][0]
    assert "warning: swapped" in fc.format_report(report)


def test_a_scale_is_named(tmp_path):
    a = random_set()
    b = {v: {"rgb": 2 * s["rgb"], "flow": s["flow"]} for v, s in a.items()}
    report = compare(tmp_path, a, b)
    for e in entries(report, "rgb"):
        assert e["norm_ratio"] == pytest.approx(2) and e["cosine"] == pytest.approx(1) and e["lag"] == 0
    for e in entries(report, "flow"):
        assert e["norm_ratio"] == pytest.approx(1)
    summary = report["summary"]
    assert summary["causes"] == ["scale"]
    assert summary["warnings"] == [summary["warnings"][0]] and "B's rgb vectors are 2 times" in summary["warnings"][0]
    assert "same directions at another scale" in summary["warnings"][0]


def test_one_mismatched_stream_is_named(tmp_path):
    a, other = random_set(), random_set(seed=9)
    b = {v: {"rgb": s["rgb"], "flow": other[v]["flow"]} for v, s in a.items()}
    summary = compare(tmp_path, a, b)["summary"]
    assert summary["causes"] == ["mismatched stream"]
    assert len(summary["warnings"]) == 1 and "B's flow features do not match" in summary["warnings"][0]
    assert summary["streams"]["rgb"]["cosine"]["min"] == pytest.approx(1)


def test_different_lengths(tmp_path):
    a = random_set()
    b = {v: dict(s) for v, s in a.items()}
    b["v2"] = {k: x[:-2] for k, x in a["v2"].items()}      # two vectors fewer at the end
    b["v4"] = {k: x[:-1] for k, x in a["v4"].items()}
    report = compare(tmp_path, a, b)
    v2 = [e for e in entries(report) if e["video"] == "v2"]
    assert [(e["length_a"], e["length_b"], e["lag"]) for e in v2] == [(41, 39, 0)] * 2
    assert all(e["cosine"] == pytest.approx(1) for e in v2)
    summary = report["summary"]
    assert summary["causes"] == ["lengths"]
    assert summary["streams"]["rgb"]["length_differences"] == {"-2": 1, "-1": 1}
    assert "2 of 4 videos differ in length (B - A: -2 in 1, -1 in 1" in summary["warnings"][0]


def test_videos_and_streams_only_in_one_set(tmp_path):
    a = random_set()
    b = {v: dict(s) for v, s in a.items() if v != "v3"}
    b["extra"] = random_set(seed=3)["v1"]
    del b["v4"]["flow"]
    report = compare(tmp_path, a, b)
    summary = report["summary"]
    assert summary["only_in_a"] == ["v3"] and summary["only_in_b"] == ["extra"]
    assert summary["stream_only_in_a"] == [["v4", "flow"]] and summary["stream_only_in_b"] == []
    assert summary["videos_compared"] == 3 and len(entries(report)) == 5
    assert summary["causes"] == ["missing videos", "missing streams"]
    assert any("1 video(s) only in A, not in B: v3" in w for w in summary["warnings"])
    assert any("only in B, not in A: extra" in w for w in summary["warnings"])


def test_other_width_is_reported_not_compared(tmp_path):
    a = random_set()
    b = {v: {"rgb": np.concatenate([s["rgb"], s["rgb"]], axis=1), "flow": s["flow"]} for v, s in a.items()}
    report = compare(tmp_path, a, b)
    assert all(e["cosine"] is None and e["width_b"] == 2 * DIM for e in entries(report, "rgb"))
    assert report["summary"]["causes"] == ["width"]


def test_command_line_json_and_errors(tmp_path, capsys):
    a = random_set()
    b = {v: {"rgb": 2 * s["rgb"], "flow": s["flow"]} for v, s in a.items()}
    root_a, root_b = write_set(tmp_path / "A", a), write_set(tmp_path / "B", b)
    out = str(tmp_path / "report.json")
    compare_features.main([root_a, root_b, "--json", out])
    printed = capsys.readouterr().out
    assert "warning: scale" in printed and f"wrote {out}" in printed
    report = json.load(open(out))
    assert set(report) == {"videos", "summary"}
    keys = {"video", "stream", "length_a", "length_b", "lag", "cosine", "cosine_p5", "norm_ratio"}
    assert all(keys <= set(e) for e in report["videos"]) and len(report["videos"]) == 8
    assert report["summary"]["causes"] == ["scale"]
    # the report is not replaced silently; a missing set is one line, exit status 2
    script = os.path.join(ROOT, "scripts", "compare_features.py")
    for args, message in (([root_a, root_b, "--json", out], "exists; choose another file or pass --overwrite"),
                          ([root_a, str(tmp_path / "nowhere")], "holds no features/ folder")):
        proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: ")


def test_model_file_table_matches_test_py_on_each_set(tmp_path, capsys):
    root_a = str(tmp_path / "A")
    write_dataset(root_a, num_train=12, num_test=6)
    root_b = str(tmp_path / "B")
    shutil.copytree(root_a, root_b)
    rng = np.random.default_rng(1)
    for name in os.listdir(os.path.join(root_b, "features", "test", "flow")):       # B: noisier flow
        path = os.path.join(root_b, "features", "test", "flow", name)
        x = np.load(path)
        np.save(path, (x + rng.normal(size=x.shape) * 0.8).astype(np.float32))
    run = str(tmp_path / "run")
    main.main(TINY_ARGS + ["--data_path", root_a, "--num_iters", "30", "--eval_every", "30", "--output_path", run,
                           "--seed", "0"])
    ckpt = os.path.join(run, "last.pt")
    expected = [testing.main(["--model_file", ckpt, "--data_path", root, "--output_path", str(tmp_path / f"t{i}"),
                              "--device", "cpu"]) for i, root in enumerate((root_a, root_b))]
    assert expected[0]["mAP"] != expected[1]["mAP"]
    capsys.readouterr()
    report = compare_features.main([root_a, root_b, "--model_file", ckpt, "--device", "cpu"])
    printed = capsys.readouterr().out
    table = printed[printed.index("detection mAP (%)"):].splitlines()[2:]
    for line, t, ma, mb in zip(table, expected[0]["tiou"], expected[0]["mAP"], expected[1]["mAP"]):
        assert line.split()[:3] == [f"{t:g}", f"{100 * ma:.2f}", f"{100 * mb:.2f}"]
    assert report["summary"]["mAP"]["a"] == expected[0]["mAP"] and report["summary"]["mAP"]["b"] == expected[1]["mAP"]
    # only the test videos' flow differs: they are the worst
    assert {(w["video"][:10], w["stream"]) for w in report["summary"]["worst"]} == {("video_test", "flow")}
