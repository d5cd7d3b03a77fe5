"""scripts/benchmark.py --quick runs end to end and prints its table, the fast code agreeing
with the references it is timed against. No timing is asserted (the comparisons themselves
are tested in test_references.py)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "benchmark.py")


def test_quick_benchmark_prints_the_table(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--quick"], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "| what | size | time | note |\n|---|---|---|---|\n" in text, text
    for row in ("train step, bare (demo)", "train step, loop (demo)", "train step, bare (paper)",
                "train step, loop (paper)", "test pass: infer", "of which forward", "of which input",
                "of which post-processing", "test pass: Evaluator", "test pass: scaled",
                "post-processing, random-weight CAS", "post-processing, action-like CAS",
                "evaluator: fast", "evaluator: plain loop reference", "evaluator: pandas-style reference",
                "paper recipe, estimated"):
        assert f"{row} | " in text, f"{row!r} missing from:\n{text}"
    assert text.count("identical") == 2 and "DIFFERENT" not in text, text
    differences = [float(line.split("max AP difference ")[1].split(";")[0])
                   for line in text.splitlines() if "max AP difference" in line]
    assert len(differences) == 2 and max(differences) < 1e-9, text
    assert not os.listdir(tmp_path)  # everything it writes goes to a temporary folder


def test_sections_and_bad_options(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--sections", "post,eval", "--no_pandas"],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| post-processing, noise CAS" in proc.stdout and "train step" not in proc.stdout
    assert "pandas-style" not in proc.stdout and "paper recipe" not in proc.stdout
    proc = subprocess.run([sys.executable, SCRIPT, "--sections", "speed"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--sections takes" in proc.stderr
