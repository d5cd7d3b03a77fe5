"""scripts/benchmark.py: the quick mode runs end to end and prints its table; the fast
post-processing gives the proposals of the literal loop version the benchmark times it
against. No timing is asserted."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark.py")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_prints_the_table(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--json", str(out)], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for row in ("train step, bare (paper)", "train step, loop (paper)", "train step, bare (demo)",
                "train step, loop (demo)", "test pass: forward", "test pass: post-processing",
                "test pass: evaluation (mAP)", "post-processing (random-weight CAS)", "evaluator (",
                "recipe: this code", "recipe: release schedule", "targets (checked, not asserted):"):
        assert row in text, f"{row!r} missing from:\n{text}"
    assert "DIFFERENT" not in text, text
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert report["postprocess"]["random_weight_cas"]["same"]
    assert report["postprocess"]["action_like_cas"]["same"]
    assert report["evaluator"]["max_ap_diff"] < 1e-9
    assert report["recipe"]["test_passes"] == 15  # steps 100, 200, ..., 1500
    assert len(report["targets"]) == 6


@pytest.mark.parametrize("seed", range(3))
def test_postprocessing_matches_the_loop_version(seed):
    from options import parse_args
    from utils import localize_video
    bench = load_benchmark()
    cfg = parse_args(["--data_path", "unused"])
    classes = [f"class{c}" for c in range(20)]
    rng = np.random.default_rng(seed)
    cases = [bench.action_like_cas(rng, 120, 20) for _ in range(3)]
    noise = rng.normal(size=(120, 20)).astype(np.float32)  # noise: many short runs
    probs = np.full(20, 0.02, dtype=np.float32)
    probs[[3, 7]] = 0.4
    cases.append((noise, probs))
    for cas, probs in cases:
        fast, _ = localize_video(cas, probs, 300, cfg, classes)
        loop = bench.loop_localize_video(cas, probs, 300, cfg, classes)
        assert fast and bench.same_proposals(fast, loop)


def test_nms_matches_the_plain_greedy_loop():
    from utils import nms
    bench = load_benchmark()
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(0, 40))
        starts = rng.integers(0, 20, n).astype(float) if trial % 2 else rng.random(n) * 10
        ends = starts + (rng.integers(0, 6, n) if trial % 2 else rng.random(n) * 3)
        scores = rng.integers(0, 4, n).astype(float) if trial % 3 == 0 else rng.random(n)  # ties too
        for threshold in (0.0, 0.3, 0.7, 1.0):
            remaining = sorted(range(n), key=lambda i: -scores[i])
            expected = []
            while remaining:
                best = remaining.pop(0)
                expected.append(best)
                a = (None, starts[best], ends[best])
                remaining = [i for i in remaining if bench._iou(a, (None, starts[i], ends[i])) < threshold]
            assert nms(starts, ends, scores, threshold).tolist() == expected
