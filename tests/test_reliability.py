"""Resume after a kill, determinism, safe writes and clear errors on bad input."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, TEST_ARGS, TINY_ARGS, folder_digest, write_dataset
from dataset import TrainBatches


def run_main(args, script="main.py", **kw):
    """`python SCRIPT ARGS` in a real process: for what only a process shows (its exit status
    as the shell sees it, a kill), and for the runs the tests share. The other commands run
    through the in_process fixture, the same entry point without the interpreter start-up."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script)] + args, capture_output=True,
                          text=True, cwd=ROOT, **kw)


def seeded(seed=2, num_iters=8):
    """The options of the shared seeded run (with another seed or length)."""
    return ["--seed", str(seed), "--eval_every", "4", "--num_iters", str(num_iters)]


@pytest.fixture(scope="module")
def seeded_run(shared_data, tmp_path_factory):
    """A seeded 8-step run, trained once by a real main.py process, that the determinism,
    resume and memory-mapping tests compare their own runs of the same options against, and
    the checkpoint of the tests that only need one. Read-only: a test that resumes or changes
    it works on a copy."""
    run = str(tmp_path_factory.mktemp("seeded") / "run")
    res = run_main(TINY_ARGS + ["--data_path", shared_data] + seeded() + ["--output_path", run])
    assert res.returncode == 0, res.stderr
    before = folder_digest(run)
    yield run
    assert folder_digest(run) == before, "a test changed the shared run instead of a copy"


def copy_run(run, tmp_path):
    """A copy of a shared run, for a test that resumes or changes it."""
    return shutil.copytree(run, str(tmp_path / "run"))


def weights(run):
    return torch.load(os.path.join(run, "last.pt"), weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def losses(run):
    """step -> line of the run's train_log.txt (the last line written for each step)."""
    out = {}
    for line in open(os.path.join(run, "train_log.txt")):
        out[int(line.split()[1])] = line
    return out


def test_killed_run_resumes_bit_for_bit(tiny_data, tmp_path):
    args = TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "600", "--save_every", "5",
                        "--eval_every", "600", "--seed", "3", "--hidden_dim", "64"]
    full = str(tmp_path / "full")
    # the uninterrupted run goes alongside the one that is killed (the two are independent)
    uninterrupted = subprocess.Popen([sys.executable, "main.py"] + args + ["--output_path", full], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    cut = str(tmp_path / "cut")
    proc = subprocess.Popen([sys.executable, "main.py"] + args + ["--output_path", cut], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = os.path.join(cut, "last.pt")
    deadline = time.time() + 120
    while time.time() < deadline:  # kill as soon as the run is half way
        if os.path.exists(ckpt) and torch.load(ckpt, weights_only=True)["step"] >= 300:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 300 <= step < 600, "the run was not interrupted mid-way"
    _, stderr = uninterrupted.communicate()
    assert uninterrupted.returncode == 0, stderr

    res = run_main(["--resume", cut, "--no_progress"])
    assert res.returncode == 0, res.stderr
    assert f"resuming {ckpt} at step {step}" in res.stdout
    assert_same_weights(weights(full), weights(cut))
    assert losses(full) == losses(cut)
    # the lines the killed run wrote after its checkpoint are dropped, as TensorBoard's
    assert open(os.path.join(full, "train_log.txt")).read() == open(os.path.join(cut, "train_log.txt")).read()
    assert json.load(open(os.path.join(full, "results.json")))["mAP"] == \
        json.load(open(os.path.join(cut, "results.json")))["mAP"]


def test_seeded_runs_are_identical_also_with_workers(shared_data, seeded_run, tmp_path, in_process):
    """Three runs of the same seed, each in its own process history: the shared run (a fresh
    process), one in this process and one with DataLoader worker processes."""
    args = TINY_ARGS + ["--data_path", shared_data] + seeded()
    runs = [seeded_run, str(tmp_path / "b"), str(tmp_path / "workers")]
    workers = subprocess.Popen([sys.executable, "main.py"] + args + ["--output_path", runs[2], "--num_workers", "2"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    res = in_process(args + ["--output_path", runs[1]])  # meanwhile, on the other core
    assert res.returncode == 0, res.stderr
    _, stderr = workers.communicate()
    assert workers.returncode == 0, stderr
    assert_same_weights(weights(runs[0]), weights(runs[1]))
    assert_same_weights(weights(runs[0]), weights(runs[2]))
    assert losses(runs[0]) == losses(runs[1]) == losses(runs[2])
    other = str(tmp_path / "other_seed")
    assert in_process(TINY_ARGS + ["--data_path", shared_data] + seeded(seed=3) + ["--output_path", other]).returncode == 0
    assert len(losses(other)) == len(losses(runs[0])) and losses(other) != losses(runs[0])


def test_seed_is_drawn_and_recorded(tiny_data, tmp_path, in_process):
    run = str(tmp_path / "run")
    assert in_process(TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "1", "--output_path", run]).returncode == 0
    assert isinstance(json.load(open(os.path.join(run, "config.json")))["seed"], int)


def test_existing_run_folder_is_never_overwritten(tiny_data, tmp_path, in_process):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("last week's logs")
    # a real process: main.py's exit status for a refused command, as the shell sees it
    res = run_main(TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "1", "--output_path", str(run)])
    assert res.returncode == 2 and "already exists" in res.stderr and "--overwrite" in res.stderr
    assert (run / "notes.txt").read_text() == "last week's logs"
    # the in-process run that most tests use gives the same exit status and output
    again = in_process(res.args[2:])
    assert (again.returncode, again.stdout, again.stderr) == (res.returncode, res.stdout, res.stderr)
    res = in_process(TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "1", "--output_path", str(run), "--overwrite"])
    assert res.returncode == 0 and (run / "notes.txt").exists()


def test_truncated_checkpoint_is_named(shared_data, seeded_run, tmp_path, in_process):
    run = copy_run(seeded_run, tmp_path)
    ckpt = os.path.join(run, "last.pt")
    data = open(ckpt, "rb").read()
    open(ckpt, "wb").write(data[: len(data) // 2])
    for res in (in_process(["--resume", run]),
                run_main(TEST_ARGS + ["--data_path", shared_data, "--model_file", ckpt], script="test.py")):
        assert res.returncode != 0 and f"cannot read checkpoint {ckpt}" in res.stderr
        assert "Traceback" not in res.stderr


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, in_process):
    root = str(tmp_path / "data")
    write_dataset(root, num_train=8, num_test=4)
    # a video with finite but huge features overflows the network: inf, then NaN
    path = os.path.join(root, "features", "train", "rgb", "video_train_0003.npy")
    np.save(path, np.full_like(np.load(path), 3e38))
    # a seed whose first batch holding that video comes after a few good steps
    seed = next(s for s in range(100)
                if 3 not in np.concatenate([TrainBatches([None] * 8, 2, 32, s).batch_videos(k) for k in range(3)]))
    run = str(tmp_path / "run")
    res = in_process(TINY_ARGS + ["--data_path", root, "--num_iters", "20", "--save_every", "1",
                                  "--batch_size", "2", "--seed", str(seed), "--output_path", run])
    assert res.returncode == 1 and "training loss became" in res.stderr and "at step" in res.stderr
    bad_step = int(res.stderr.split("at step")[1].split(";")[0])
    ckpt = torch.load(os.path.join(run, "last.pt"), weights_only=True)
    assert ckpt["step"] == bad_step - 1 >= 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


# ----------------------------------------------------------------------------- bad input
def corrupt(root, how):
    feats = os.path.join(root, "features", "train")
    video = "video_train_0002"
    rgb, flow = os.path.join(feats, "rgb", video + ".npy"), os.path.join(feats, "flow", video + ".npy")
    if how == "missing":
        os.remove(rgb)
    elif how == "empty":
        open(rgb, "w").close()
    elif how == "not_npy":
        open(rgb, "w").write("this is not an array")
    elif how == "nan":
        a = np.load(rgb)
        a[3, 2] = np.nan
        np.save(rgb, a)
    elif how == "lengths":
        np.save(flow, np.load(flow)[:-3])
    elif how == "width":
        np.save(rgb, np.load(rgb)[:, :5])
    elif how == "split_twice":
        with open(os.path.join(root, "split_train.txt"), "a") as f:
            f.write(video + "\n")
    elif how in ("test_end_before_start", "test_not_a_number"):
        gt_path = os.path.join(root, "gt.json")
        gt = json.load(open(gt_path))
        gt["database"]["video_test_0001"]["annotations"][0]["segment"] = (
            ["5.0", "2.0"] if how == "test_end_before_start" else ["soon", "2.0"])
        json.dump(gt, open(gt_path, "w"))
    elif how in ("unknown_video", "unknown_label", "no_labels"):
        gt_path = os.path.join(root, "gt.json")
        gt = json.load(open(gt_path))
        if how == "unknown_video":
            del gt["database"][video]
        elif how == "no_labels":
            gt["database"][video]["annotations"] = []
        else:
            gt["database"][video]["annotations"][0]["label"] = "Juggling"
        json.dump(gt, open(gt_path, "w"))
        return os.path.join(root, "class_list.txt")
    return rgb


BAD_INPUTS = {
    "missing": "missing feature file: {rgb}",
    "empty": "empty feature file: {rgb}",
    "not_npy": "not a valid .npy file: {rgb}",
    "nan": "video video_train_0002: features hold NaN or Inf",
    "lengths": "video video_train_0002: rgb and flow have different lengths",
    "width": "video video_train_0002 has feature width 13, but video_train_0000 has 16",
    "unknown_video": "names 1 video(s) absent from",
    "unknown_label": "video video_train_0002 has label 'Juggling', which is not in the class list",
    "no_labels": "training video video_train_0002 has no annotation in",
    "split_twice": "split_train.txt lists video video_train_0002 more than once",
    # the evaluated subset's ground truth is checked before training, not after it
    "test_end_before_start": "video 'video_test_0001', annotation 0: segment ['5.0', '2.0'] ends before it starts",
    "test_not_a_number": "video 'video_test_0001', annotation 0: malformed segment ['soon', '2.0'], expected numbers",
}


@pytest.mark.parametrize("how", sorted(BAD_INPUTS))
def test_bad_data_gives_one_line_error(tmp_path, how, in_process):
    root = str(tmp_path / "data")
    write_dataset(root, num_train=6, num_test=3)
    with open(os.path.join(root, "class_list.txt"), "w") as f:
        f.write("Class0\nClass1\nClass2\n")
    rgb = corrupt(root, how)
    res = in_process(TINY_ARGS + ["--data_path", root, "--class_list", os.path.join(root, "class_list.txt"),
                                "--output_path", str(tmp_path / "run")])
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert BAD_INPUTS[how].format(rgb=rgb) in res.stderr
    assert not os.path.exists(tmp_path / "run" / "last.pt")


def test_output_path_naming_a_file(tiny_data, tmp_path, in_process):
    path = tmp_path / "results.txt"
    path.write_text("a user's file")
    res = in_process(TINY_ARGS + ["--data_path", tiny_data, "--output_path", str(path)])
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"--output_path {path} is a file, not a folder" in res.stderr
    assert path.read_text() == "a user's file"


def test_resume_refuses_a_changed_recipe_option(seeded_run, tmp_path, in_process):
    run = copy_run(seeded_run, tmp_path)  # 8 steps
    res = in_process(["--resume", run, "--lr", "0.5", "--num_iters", "10"])
    assert res.returncode == 2 and "--lr 0.5 differs from the resumed run's 0.001" in res.stderr
    res = in_process(["--resume", run, "--lr", "1e-3", "--num_iters", "9", "--device", "cpu", "--no_progress"])
    assert res.returncode == 0 and "at step 8 of 9" in res.stdout


def test_skip_bad_videos_lists_what_was_skipped(tmp_path, in_process):
    root = str(tmp_path / "data")
    write_dataset(root, num_train=6, num_test=3)
    corrupt(root, "nan")
    res = in_process(TINY_ARGS + ["--data_path", root, "--num_iters", "1", "--skip_bad_videos",
                                "--output_path", str(tmp_path / "run")])
    assert res.returncode == 0, res.stderr
    assert "skipped 1 train video(s) with NaN/Inf features: video_train_0002" in res.stdout


@pytest.mark.parametrize("args,message", [
    (["--r", "64"], "--r 64 must be between 1 and --num_segments 32"),
    (["--class_th", "1.5"], "--class_th must be in (0, 1)"),
    (["--batch_size", "0"], "--batch_size must be >= 1"),
])
def test_contradictory_options(tiny_data, tmp_path, args, message, in_process):
    res = in_process(TINY_ARGS + ["--data_path", tiny_data, "--output_path", str(tmp_path / "run")] + args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_missing_dataset_points_to_the_demo(tmp_path, in_process):
    res = in_process(["--data_path", str(tmp_path / "nothing"), "--output_path", str(tmp_path / "run")])
    assert res.returncode == 2 and "python main.py --dataset synthetic" in res.stderr


def test_checkpoint_for_other_classes_or_width(seeded_run, tmp_path, in_process):
    run = seeded_run
    other = str(tmp_path / "other")
    write_dataset(other, num_train=6, num_test=3, num_classes=4)
    res = in_process(TEST_ARGS + ["--data_path", other, "--model_file", os.path.join(run, "last.pt"),
                                  "--output_path", str(tmp_path / "t1")], script="test.py")
    assert res.returncode == 2 and "was trained for 3 classes (+ background), but the dataset has 4" in res.stderr
    wide = str(tmp_path / "wide")
    write_dataset(wide, num_train=6, num_test=3, dim=6)
    res = in_process(TEST_ARGS + ["--data_path", wide, "--model_file", os.path.join(run, "last.pt"),
                                  "--output_path", str(tmp_path / "t2")], script="test.py")
    assert res.returncode == 2 and "expects features 16 wide, but the dataset's are 12" in res.stderr


def test_resume_can_extend_a_finished_run_and_says_when_nothing_is_left(shared_data, seeded_run, tmp_path,
                                                                        in_process):
    full, short = seeded_run, str(tmp_path / "short")  # the same options, 8 and 4 steps
    assert in_process(TINY_ARGS + ["--data_path", shared_data] + seeded(num_iters=4) + ["--output_path", short]
                      ).returncode == 0
    res = in_process(["--resume", short])
    assert res.returncode == 0 and "nothing to do" in res.stdout
    assert in_process(["--resume", short, "--num_iters", "8"]).returncode == 0
    assert_same_weights(weights(full), weights(short))


def test_memory_mapped_features_train_like_in_memory_ones_and_are_checked(shared_data, seeded_run, tmp_path,
                                                                           in_process):
    args = TINY_ARGS + ["--data_path", shared_data] + seeded()
    ram, mapped = seeded_run, str(tmp_path / "mapped")  # the shared run held its features in memory
    res = in_process(args + ["--output_path", mapped, "--max_memory_gb", "1e-9"])
    assert res.returncode == 0 and "memory-mapped" in res.stdout
    assert_same_weights(weights(ram), weights(mapped))
    root = shutil.copytree(shared_data, str(tmp_path / "data"))
    corrupt(root, "nan")
    args[args.index("--data_path") + 1] = root
    res = in_process(args + ["--output_path", str(tmp_path / "bad"), "--max_memory_gb", "1e-9"])
    assert res.returncode == 2 and "video video_train_0002: features hold NaN or Inf" in res.stderr
