"""DistributedDataParallel on CPU (gloo): two processes, compared with one."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from conftest import ROOT, TINY_ARGS, folder_digest

ARGS = TINY_ARGS + ["--num_iters", "6", "--eval_every", "6", "--seed", "5", "--dropout", "0"]
# the shared torchrun run: 6 steps with dropout, so the per-process RNG states matter
TORCHRUN_ARGS = TINY_ARGS + ["--seed", "5", "--eval_every", "3"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot_sources(dest):
    """A copy of the project's Python modules and packages. A test that runs main.py several
    times over several seconds runs it from here: an edit of the working tree between the
    runs would otherwise make them run different code (a resumed run that is not exact, or
    a rank that exits with a live gloo group and dies of SIGABRT, "terminate called without
    an active exception"), a failure that then passes on rerun."""
    os.makedirs(dest)
    for name in sorted(os.listdir(ROOT)):
        src = os.path.join(ROOT, name)
        if name.endswith(".py") and os.path.isfile(src):
            shutil.copy2(src, dest)
        elif os.path.isfile(os.path.join(src, "__init__.py")):
            shutil.copytree(src, os.path.join(dest, name), ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def torchrun(args, cwd=ROOT):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "main.py"] + args
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    # all of stderr (the ranks' tracebacks come before torchrun's own report) and the end of
    # stdout (a rank that stops early says why there)
    assert res.returncode == 0, f"{' '.join(args)}\n--- stdout\n{res.stdout[-2000:]}\n--- stderr\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def torchrun_run(shared_data, tmp_path_factory):
    """(source snapshot, run folder, finished torchrun process) of one 2-process run of 6
    steps, trained once for the tests that read it. Read-only."""
    tmp = tmp_path_factory.mktemp("torchrun")
    src = snapshot_sources(str(tmp / "src"))  # the runs that resume it run the same code
    run = str(tmp / "ddp")
    res = torchrun(TORCHRUN_ARGS + ["--data_path", shared_data, "--num_iters", "6", "--output_path", run], cwd=src)
    before = folder_digest(run)
    yield src, run, res
    assert folder_digest(run) == before, "a test changed the shared run instead of a copy"


def test_torchrun_two_processes_write_one_run_that_test_py_reads(shared_data, torchrun_run, tmp_path, in_process):
    _, run, res = torchrun_run
    files = sorted(os.listdir(run))
    assert [f for f in files if not f.startswith("events")] == \
        ["config.json", "last.pt", "predictions.json", "results.json", "train_log.txt"]
    assert len([f for f in files if f.startswith("events")]) == 1
    assert res.stdout.count("run folder:") == 1  # one process reports
    ckpt = torch.load(os.path.join(run, "last.pt"), weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert len(ckpt["rng"]) == 2
    # the checkpoint loads in a single-process test.py, with the same mAP
    single = in_process(["--model_file", os.path.join(run, "last.pt"), "--data_path", shared_data,
                         "--output_path", str(tmp_path / "single"), "--device", "cpu"], script="test.py")
    assert single.returncode == 0, single.stderr
    a = json.load(open(os.path.join(run, "results.json")))
    b = json.load(open(tmp_path / "single" / "results.json"))
    assert a["mAP"] == b["mAP"]


def _worker(rank, world_size, port, args, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    sys.path.insert(0, ROOT)
    import main
    from dataset import load_dataset
    from options import parse_args
    from train import train
    from utils import set_seed
    cfg = parse_args(args)
    rank, world_size, device = main.setup_distributed("cpu")
    set_seed(cfg.seed + rank)
    model, _ = train(cfg, load_dataset(cfg), device, rank, world_size)
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    # a process that exits with a live gloo group after collectives may abort at exit (SIGABRT)
    import torch.distributed as dist
    dist.destroy_process_group()


def log_losses(run):
    return [[float(x) for x in line.split()[3::2]] for line in open(os.path.join(run, "train_log.txt"))]


@pytest.mark.parametrize("world_size", [2])
def test_ranks_agree_and_match_one_process_on_the_same_samples(shared_data, tmp_path, world_size, in_process):
    args = ARGS + ["--data_path", shared_data, "--eval_every", "100", "--no_progress"]
    ddp, single = str(tmp_path / "ddp"), str(tmp_path / "single")
    os.makedirs(ddp)
    mp.spawn(_worker, args=(world_size, free_port(), args + ["--output_path", ddp], ddp), nprocs=world_size)
    w0, w1 = (torch.load(os.path.join(ddp, f"rank{r}.pt"), weights_only=True) for r in range(2))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"{k} differs between ranks"

    res = in_process(args + ["--output_path", single])
    assert res.returncode == 0, res.stderr
    # same global batch of 8 (4 + 4 versus 8), same samples, no dropout: same losses and weights
    torch.testing.assert_close(torch.tensor(log_losses(ddp)), torch.tensor(log_losses(single)), rtol=1e-4, atol=1e-6)
    w = torch.load(os.path.join(single, "last.pt"), weights_only=True)["model"]
    for k in w:
        torch.testing.assert_close(w0[k], w[k], rtol=1e-3, atol=1e-5)


def test_resume_under_torchrun_is_exact(shared_data, torchrun_run, tmp_path):
    """A 2-process run stopped at step 3 and resumed to step 6 (with dropout, so the
    per-process RNG states matter) ends where an uninterrupted 6-step run ends."""
    src, full, _ = torchrun_run  # the uninterrupted run; the three runs run the same code
    args = TORCHRUN_ARGS + ["--data_path", shared_data]
    cut = str(tmp_path / "cut")
    torchrun(args + ["--num_iters", "3", "--output_path", cut], cwd=src)
    res = torchrun(["--resume", cut, "--num_iters", "6", "--no_progress"], cwd=src)
    assert "at step 3 of 6" in res.stdout
    a = torch.load(os.path.join(full, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(cut, "last.pt"), weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert log_losses(full) == log_losses(cut)  # steps 1-3, then 4-6 from the resumed run
