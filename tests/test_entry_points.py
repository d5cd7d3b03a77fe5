"""The small commands end through utils.run_entry_point: Ctrl-C in scripts/seeds.py (and
so in scripts/demo_ablation.sh) is one line `interrupted` and exit status 130, bad input
of scripts/prepare_thumos14.py one line `error: ...` and exit status 2."""
import os
import signal
import subprocess
import sys
import threading

from conftest import ROOT, TINY_ARGS, write_dataset


def test_ctrl_c_in_seeds_stops_it_and_its_main_py_without_a_traceback(tmp_path):
    data = str(tmp_path / "data")
    write_dataset(data, num_train=16, num_test=8)
    out = str(tmp_path / "out")
    # a run far too long to finish: it is interrupted while it trains
    args = ["--seeds", "0", "--name", "long", "--outputs", out, "--"] + TINY_ARGS + [
        "--data_path", data, "--num_iters", "1000000", "--eval_every", "1000000", "--save_every", "5"]
    proc = subprocess.Popen([sys.executable, os.path.join("scripts", "seeds.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(300, proc.kill)      # never hang the suite
    guard.start()
    try:
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if "] training " in line:            # main.py, started by seeds.py, is training
                break
        os.kill(proc.pid, signal.SIGINT)         # what Ctrl-C sends to seeds.py
        rest, err = proc.communicate()
    finally:
        guard.cancel()
    printed = "".join(printed) + rest
    assert proc.returncode == 130, printed + err
    assert "Traceback" not in printed + err
    assert err.strip().splitlines() == ["interrupted"]
    # main.py got the interrupt too and stopped through its own wrapper (relayed, prefixed)
    assert "[seed 0] interrupted\n" in printed
    assert "[seed 0] stopped: the same command continues it" in printed
    with open(os.path.join(out, "long", "logs", "seed_0.log")) as f:
        assert f.read().splitlines()[-1] == "interrupted"


def test_prepare_thumos14_refuses_an_unwritable_out_before_reading(tmp_path, unwritable_dir):
    out = os.path.join(unwritable_dir, "THUMOS14")
    proc = subprocess.run([sys.executable, os.path.join("scripts", "prepare_thumos14.py"), "--val_dir",
                           str(tmp_path / "not_read"), "--test_dir", str(tmp_path / "not_read"), "--out", out],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: --out {out}") and "cannot be written" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_sigterm_to_seeds_reaches_its_main_py(tmp_path):
    # main.py runs in its own session (so that Ctrl-C reaches seeds.py only): a SIGTERM
    # for seeds.py (a job killed) must still stop it
    data = str(tmp_path / "data")
    write_dataset(data, num_train=16, num_test=8)
    args = ["--seeds", "0", "--name", "long", "--outputs", str(tmp_path / "out"), "--"] + TINY_ARGS + [
        "--data_path", data, "--num_iters", "1000000", "--eval_every", "1000000"]
    proc = subprocess.Popen([sys.executable, os.path.join("scripts", "seeds.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guard = threading.Timer(300, proc.kill)
    guard.start()
    try:
        for line in proc.stdout:
            if "] training " in line:
                break
        ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True)
        child = int(ps.stdout.split()[0])
        proc.terminate()
        proc.communicate()
    finally:
        guard.cancel()
    assert proc.returncode == -signal.SIGTERM
    # main.py got it too: it is gone (reaped by seeds.py, so no process has its id)
    assert not os.path.exists(f"/proc/{child}")
