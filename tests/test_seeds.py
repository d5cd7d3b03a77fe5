"""scripts/seeds.py (several seeds / variants in one command) and the scripts/*.sh recipes."""
import glob
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY_ARGS, write_dataset

sys.path.insert(0, os.path.join(ROOT, "scripts"))

import main as main_module  # noqa: E402
import seeds  # noqa: E402

STEPS = ["--num_iters", "2", "--eval_every", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("seeds") / "data")
    write_dataset(root, num_train=16, num_test=8)
    return root


def in_process(monkeypatch, calls):
    """Run main.py inside this process instead of a subprocess (fast), recording commands."""
    def launch(cmd, log_path, prefix):
        calls.append(cmd)
        assert cmd[1] == seeds.MAIN
        try:
            main_module.main(cmd[2:])
        except SystemExit as e:
            return e.code or 1
        return 0
    monkeypatch.setattr(seeds, "launch", launch)


def results_of(path):
    with open(os.path.join(path, "results.json")) as f:
        return json.load(f)


def test_two_seeds_subprocess_summary_reuse_and_collect(data, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "outputs")
    args = ["--seeds", "0", "1", "--name", "tiny", "--outputs", out, "--"] + TINY_ARGS + ["--data_path", data] + STEPS
    summary = seeds.main(args)  # real subprocesses
    exp = os.path.join(out, "tiny")
    for s in (0, 1):
        run = os.path.join(exp, f"seed_{s}")
        assert os.path.isfile(os.path.join(run, "results.json"))
        with open(os.path.join(run, "config.json")) as f:
            assert json.load(f)["seed"] == s
        with open(os.path.join(run, seeds.MARKER)) as f:
            assert json.load(f)["returncode"] == 0
        assert "step 2:" in open(os.path.join(exp, "logs", f"seed_{s}.log")).read()
    maps = np.array([results_of(os.path.join(exp, f"seed_{s}"))["mAP"] for s in (0, 1)]) * 100
    avgs = np.array([results_of(os.path.join(exp, f"seed_{s}"))["average_mAP"] for s in (0, 1)]) * 100
    assert list(summary.index) == ["basnet"] and summary.loc["basnet", "n_seeds"] == 2
    assert np.allclose(summary.loc["basnet", "mAP@0.5_mean"], maps[:, 4].mean())
    assert np.allclose(summary.loc["basnet", "mAP@0.5_std"], maps[:, 4].std(ddof=1))
    assert np.allclose(summary.loc["basnet", "avg_mean"], avgs.mean())
    assert "avg 0.1:0.5_mean" in summary.columns and "avg 0.1:0.9_mean" not in summary.columns
    for name in ("summary.csv", "summary.md", "runs.csv"):
        assert os.path.isfile(os.path.join(exp, name))
    md = open(os.path.join(exp, "summary.md")).read()
    assert f"| basnet | {maps[:, 0].mean():.2f} ± {maps[:, 0].std(ddof=1):.2f} |" in md
    printed = capsys.readouterr().out
    assert "mAP@0.1" in printed and "[seed 1] step 2:" in printed

    # finished runs are reused, nothing is launched
    calls = []
    in_process(monkeypatch, calls)
    again = seeds.main(args)
    assert calls == [] and "reusing the finished run" in capsys.readouterr().out
    assert np.allclose(again.to_numpy(dtype=float), summary.to_numpy(dtype=float), equal_nan=True)
    # --collect finds the seeds by itself
    collected = seeds.main(["--name", "tiny", "--outputs", out, "--collect"])
    assert np.allclose(collected.to_numpy(dtype=float), summary.to_numpy(dtype=float), equal_nan=True)
    # other options into the same folders: refused, the runs stay untouched
    with pytest.raises(SystemExit):
        seeds.main(args + ["--lr", "2e-3"])
    assert "lr: 0.001 there, 0.002 now" in capsys.readouterr().err
    assert sorted(os.listdir(exp)) == ["logs", "runs.csv", "seed_0", "seed_1", "summary.csv", "summary.md"]


def test_variants_rerun_and_resume(data, tmp_path, monkeypatch, capsys):
    calls = []
    in_process(monkeypatch, calls)
    out = str(tmp_path / "outputs")
    base = ["--name", "abl", "--outputs", out, "--seeds", "3"]
    main_args = ["--"] + TINY_ARGS + ["--data_path", data] + STEPS
    summary = seeds.main(base + ["--variants", "baseline", "supp_only"] + main_args)
    assert list(summary.index) == ["baseline", "supp_only"]
    assert [c[c.index("--variant") + 1] for c in calls] == ["baseline", "supp_only"]
    exp = os.path.join(out, "abl")
    for v in ("baseline", "supp_only"):
        with open(os.path.join(exp, v, "seed_3", "config.json")) as f:
            assert json.load(f)["variant"] == v
    assert summary.loc["baseline", "n_seeds"] == 1  # one seed: no std
    assert "± n/a" in open(os.path.join(exp, "summary.md")).read()

    # --rerun keeps the old folder under another name
    calls.clear()
    seeds.main(base + ["--variants", "baseline", "--rerun"] + main_args)
    assert len(calls) == 1
    old = glob.glob(os.path.join(exp, "baseline", "seed_3.old-*"))
    assert len(old) == 1 and os.path.isfile(os.path.join(old[0], "results.json"))

    # an unfinished run (checkpoint before num_iters, no marker) is continued with --resume
    run = os.path.join(exp, "supp_only", "seed_3")
    os.remove(os.path.join(run, seeds.MARKER))
    ckpt = os.path.join(run, "last.pt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["config"]["num_iters"] = 4
    torch.save(state, ckpt)
    with open(os.path.join(run, "config.json")) as f:
        config = json.load(f)
    config["num_iters"] = 4
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f)
    calls.clear()
    seeds.main(base + ["--variants", "supp_only"] + main_args[:-4] + ["--num_iters", "4", "--eval_every", "2"])
    assert len(calls) == 1 and calls[0][-2:] == ["--resume", run]
    assert "continuing it from its checkpoint" in capsys.readouterr().out
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["step"] == 4

    # collect: variants found on disk, in the paper's order
    collected = seeds.main(["--name", "abl", "--outputs", out, "--collect"])
    assert list(collected.index) == ["baseline", "supp_only"]


def test_argument_errors(data, tmp_path, monkeypatch, capsys):
    calls = []
    in_process(monkeypatch, calls)
    base = ["--name", "x", "--outputs", str(tmp_path)]
    for bad in (["--seed", "1"], ["--output_path=o"], ["--overwrite"]):
        with pytest.raises(SystemExit):
            seeds.main(base + ["--"] + TINY_ARGS + ["--data_path", data] + bad)
        assert "is set by seeds.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        seeds.main(base + ["--variants", "basnet", "--"] + TINY_ARGS + ["--data_path", data, "--variant", "baseline"])
    with pytest.raises(SystemExit):  # no main.py options
        seeds.main(base)
    with pytest.raises(SystemExit):  # a bad main.py option stops before any run
        seeds.main(base + ["--"] + TINY_ARGS + ["--data_path", data, "--num_iters", "-1"])
    assert "--num_iters must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        seeds.main(base + ["--collect"])
    assert calls == []


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
def test_shell_script(name):
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
        own, main_args = seeds.split_argv(words[2:-1])
        assert words[1] == "scripts/seeds.py" and own[own.index("--name") + 1] == "demo_ablation"
        args = seeds.build_parser().parse_args(own)
        assert args.variants == ["basnet", "baseline", "base_bg", "supp_only"] and args.seeds == [0, 1, 2]
        parse_args(main_args)
        return
    assert words[1] == "main.py"
    cfg = parse_args(words[2:-1])
    assert cfg.output_path == "outputs/" + name[:-3]  # the folder is named after the experiment
