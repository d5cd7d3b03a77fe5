"""scripts/seeds.py (several seeds / variants in one command) and the scripts/*.sh recipes."""
import glob
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, TINY_ARGS, write_dataset

SCRIPT = os.path.join("scripts", "seeds.py")
MAIN = os.path.join(ROOT, "main.py")
MARKER = "seeds_run.json"  # written by seeds.py into a run folder that main.py finished
STEPS = ["--num_iters", "2", "--eval_every", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("seeds") / "data")
    write_dataset(root, num_train=16, num_test=8)
    return root


@pytest.fixture
def seeds(in_process):
    """seeds(args, code=0, real=False): scripts/seeds.py run as a user would, its exit status
    checked; in this process (see in_process; the main.py runs it starts are real processes
    either way), or with real=True in its own process, as the shell starts it."""
    def run(args, code=0, real=False):
        if real:
            proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True)
        else:
            proc = in_process(args, script=SCRIPT)
        assert proc.returncode == code, proc.stdout + proc.stderr
        return proc
    return run


def launched(stdout):
    """The main.py commands seeds.py started (the words after the interpreter), in order,
    from its '[<run>] running: ...' / '[<run>] continuing: ...' lines."""
    calls = []
    for line in stdout.splitlines():
        for word in ("] running: ", "] continuing: "):
            if line.startswith("[") and word in line:
                cmd = line.split(word, 1)[1].split()
                assert cmd[0] == MAIN
                calls.append(cmd)
    return calls


def summary_of(exp):
    """summary.csv as seeds.py wrote it (values in percent, 4 decimals)."""
    return pd.read_csv(os.path.join(exp, "summary.csv"), index_col="variant")


def results_of(path):
    with open(os.path.join(path, "results.json")) as f:
        return json.load(f)


def test_two_seeds_subprocess_summary_reuse_and_collect(data, tmp_path, seeds):
    out = str(tmp_path / "outputs")
    args = ["--seeds", "0", "1", "--name", "tiny", "--outputs", out, "--"] + TINY_ARGS + ["--data_path", data] + STEPS
    printed = seeds(args, real=True).stdout  # real subprocesses
    assert len(launched(printed)) == 2
    exp = os.path.join(out, "tiny")
    for s in (0, 1):
        run = os.path.join(exp, f"seed_{s}")
        assert os.path.isfile(os.path.join(run, "results.json"))
        with open(os.path.join(run, "config.json")) as f:
            assert json.load(f)["seed"] == s
        with open(os.path.join(run, MARKER)) as f:
            assert json.load(f)["returncode"] == 0
        assert "step 2:" in open(os.path.join(exp, "logs", f"seed_{s}.log")).read()
    for name in ("summary.csv", "summary.md", "runs.csv"):
        assert os.path.isfile(os.path.join(exp, name))
    maps = np.array([results_of(os.path.join(exp, f"seed_{s}"))["mAP"] for s in (0, 1)]) * 100
    avgs = np.array([results_of(os.path.join(exp, f"seed_{s}"))["average_mAP"] for s in (0, 1)]) * 100
    summary = summary_of(exp)
    close = dict(rtol=0, atol=1e-4)  # summary.csv holds 4 decimals
    assert list(summary.index) == ["basnet"] and summary.loc["basnet", "n_seeds"] == 2
    assert np.allclose(summary.loc["basnet", "mAP@0.5_mean"], maps[:, 4].mean(), **close)
    assert np.allclose(summary.loc["basnet", "mAP@0.5_std"], maps[:, 4].std(ddof=1), **close)
    assert np.allclose(summary.loc["basnet", "avg_mean"], avgs.mean(), **close)
    assert "avg 0.1:0.5_mean" in summary.columns and "avg 0.1:0.9_mean" not in summary.columns
    runs = pd.read_csv(os.path.join(exp, "runs.csv"))
    assert list(runs["seed"]) == [0, 1]
    assert np.allclose(runs["mAP@0.5"], maps[:, 4], **close) and np.allclose(runs["avg"], avgs, **close)
    md = open(os.path.join(exp, "summary.md")).read()
    assert f"| basnet | {maps[:, 0].mean():.2f} ± {maps[:, 0].std(ddof=1):.2f} |" in md
    assert "mAP@0.1" in printed and "[seed 1] step 2:" in printed
    written = {name: open(os.path.join(exp, name)).read() for name in ("summary.csv", "summary.md", "runs.csv")}
    logs = {s: open(os.path.join(exp, "logs", f"seed_{s}.log")).read() for s in (0, 1)}

    # finished runs are reused, nothing is launched
    printed = seeds(args).stdout
    assert launched(printed) == [] and "reusing the finished run" in printed
    assert {s: open(os.path.join(exp, "logs", f"seed_{s}.log")).read() for s in (0, 1)} == logs
    again = summary_of(exp)
    assert np.allclose(again.to_numpy(dtype=float), summary.to_numpy(dtype=float), equal_nan=True)
    assert {name: open(os.path.join(exp, name)).read() for name in written} == written
    # --collect finds the seeds by itself
    os.remove(os.path.join(exp, "summary.csv"))
    printed = seeds(["--name", "tiny", "--outputs", out, "--collect"]).stdout
    assert launched(printed) == []
    collected = summary_of(exp)
    assert np.allclose(collected.to_numpy(dtype=float), summary.to_numpy(dtype=float), equal_nan=True)
    assert {name: open(os.path.join(exp, name)).read() for name in written} == written
    # other options into the same folders: refused, the runs stay untouched
    proc = seeds(args + ["--lr", "2e-3"], code=2)
    assert "lr: 0.001 there, 0.002 now" in proc.stderr and launched(proc.stdout) == []
    assert sorted(os.listdir(exp)) == ["logs", "runs.csv", "seed_0", "seed_1", "summary.csv", "summary.md"]
    assert {s: open(os.path.join(exp, "logs", f"seed_{s}.log")).read() for s in (0, 1)} == logs


def test_variants_rerun_and_resume(data, tmp_path, seeds):
    out = str(tmp_path / "outputs")
    base = ["--name", "abl", "--outputs", out, "--seeds", "3"]
    main_args = ["--"] + TINY_ARGS + ["--data_path", data] + STEPS
    calls = launched(seeds(base + ["--variants", "baseline", "supp_only"] + main_args).stdout)
    exp = os.path.join(out, "abl")
    summary = summary_of(exp)
    assert list(summary.index) == ["baseline", "supp_only"]
    assert [c[c.index("--variant") + 1] for c in calls] == ["baseline", "supp_only"]
    for v in ("baseline", "supp_only"):
        with open(os.path.join(exp, v, "seed_3", "config.json")) as f:
            assert json.load(f)["variant"] == v
    assert summary.loc["baseline", "n_seeds"] == 1  # one seed: no std
    assert np.isnan(summary.loc["baseline", "mAP@0.5_std"])
    assert "± n/a" in open(os.path.join(exp, "summary.md")).read()

    # --rerun keeps the old folder under another name
    calls = launched(seeds(base + ["--variants", "baseline", "--rerun"] + main_args).stdout)
    assert len(calls) == 1
    old = glob.glob(os.path.join(exp, "baseline", "seed_3.old-*"))
    assert len(old) == 1 and os.path.isfile(os.path.join(old[0], "results.json"))

    # an unfinished run (checkpoint before num_iters, no marker) is continued with --resume
    run = os.path.join(exp, "supp_only", "seed_3")
    os.remove(os.path.join(run, MARKER))
    ckpt = os.path.join(run, "last.pt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["config"]["num_iters"] = 4
    torch.save(state, ckpt)
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    config["num_iters"] = 4
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    printed = seeds(base + ["--variants", "supp_only"] + main_args[:-4] + ["--num_iters", "4", "--eval_every", "2"]).stdout
    calls = launched(printed)
    assert len(calls) == 1 and calls[0][-2:] == ["--resume", run]
    assert "continuing it from its checkpoint" in printed
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["step"] == 4
    with open(os.path.join(run, MARKER)) as f:
        assert json.load(f)["resumed"] is True

    # collect: variants found on disk, in the paper's order
    os.remove(os.path.join(exp, "summary.csv"))
    assert launched(seeds(["--name", "abl", "--outputs", out, "--collect"]).stdout) == []
    assert list(summary_of(exp).index) == ["baseline", "supp_only"]


def test_argument_errors(data, tmp_path, seeds):
    base = ["--name", "x", "--outputs", str(tmp_path)]
    main_args = ["--"] + TINY_ARGS + ["--data_path", data]
    cases = [(base + main_args + bad, "is set by seeds.py")
             for bad in (["--seed", "1"], ["--output_path=o"], ["--overwrite"])]
    cases += [
        (base + ["--variants", "basnet"] + main_args + ["--variant", "baseline"], "--variant is set by seeds.py"),
        (base, "give the main.py options after '--'"),  # no main.py options
        (base + main_args + ["--num_iters", "-1"], "--num_iters must be >= 0"),  # stops before any run
        (base + ["--collect"], "no experiment folder"),
    ]
    for i, (args, message) in enumerate(cases):
        proc = seeds(args, code=2, real=i == 0)  # the first one as the shell runs it
        assert message in proc.stderr, (args, proc.stderr)
        assert launched(proc.stdout) == []  # nothing was launched
    # no run, no log, no experiment folder
    assert not os.path.exists(os.path.join(str(tmp_path), "x"))


# ----------------------------------------------------------------------------- shell scripts
SCRIPTS = ["thumos14_i3d.sh", "thumos14_unt.sh", "ablation_baseline.sh", "ablation_base_bg.sh",
           "ablation_supp_only.sh", "anet12.sh", "anet13.sh", "demo.sh", "demo_ablation.sh",
           "test_checkpoint.sh"]


def command_line(name):
    lines = [line for line in open(os.path.join(ROOT, "scripts", name)).read().splitlines()
             if line.startswith("python ")]
    assert len(lines) == 1, f"{name}: one python command line expected"
    return shlex.split(lines[0])


@pytest.mark.parametrize("name", SCRIPTS)
def test_shell_script(name, tmp_path, seeds):
    path = os.path.join(ROOT, "scripts", name)
    text = open(path).read()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -e\n" in text
    assert os.access(path, os.X_OK)
    subprocess.run(["bash", "-n", path], check=True)
    words = command_line(name)
    assert words[-1] in ("$@", "${@:2}")
    from options import parse_args
    if name == "test_checkpoint.sh":
        assert words[1:4] == ["test.py", "--model_file", "$1"]
        return
    if name == "demo_ablation.sh":
        assert words[1] == "scripts/seeds.py"
        argv = words[2:-1]
        assert "--" in argv  # seeds.py options, then the main.py options
        own, main_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
        assert own[own.index("--name") + 1] == "demo_ablation"

        def values(option):  # the words after an option, up to the next option
            rest = own[own.index(option) + 1:]
            return rest[:next((i for i, w in enumerate(rest) if w.startswith("--")), len(rest))]
        assert values("--variants") == ["basnet", "baseline", "base_bg", "supp_only"]
        assert [int(s) for s in values("--seeds")] == [0, 1, 2]
        # seeds.py accepts its own options (the variants are known ones): with --collect on an
        # empty folder it gets past its argument parser and stops at the missing experiment
        proc = seeds(own + ["--outputs", str(tmp_path), "--collect"], code=2)
        assert "error: no experiment folder" in proc.stderr and "usage:" not in proc.stderr
        parse_args(main_args)
        return
    assert words[1] == "main.py"
    cfg = parse_args(words[2:-1])
    assert cfg.output_path == "outputs/" + name[:-3]  # the folder is named after the experiment
