"""main.py creates a run folder only once the run can start: a refused start (a checkpoint
that does not fit, an output folder that cannot be written) ends in one line `error: ...`
and exit status 2 before anything is written, and never blocks the corrected command."""
import json
import os

import pytest

import main
from conftest import TINY_ARGS


def run_main(argv, capsys):
    """(exit status, stdout, stderr) of main.py's entry point, run in this process."""
    try:
        main.run(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def baseline_run(tiny_data, tmp_path, capsys):
    """A finished one-step run of --variant baseline, --hidden_dim 32: its last.pt."""
    run = str(tmp_path / "baseline")
    code, _, err = run_main(TINY_ARGS + ["--data_path", tiny_data, "--variant", "baseline", "--num_iters", "1",
                                         "--seed", "0", "--output_path", run], capsys)
    assert code == 0, err
    return os.path.join(run, "last.pt")


def test_checkpoint_of_another_variant_or_width_leaves_no_folder(tiny_data, baseline_run, tmp_path, capsys):
    # the two cases of issue 22: then the corrected command runs in the same --output_path
    out = str(tmp_path / "from_checkpoint")
    base = TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "1", "--seed", "0",
                        "--model_file", baseline_run, "--output_path", out]
    code, printed, err = run_main(base, capsys)       # --variant basnet from a baseline checkpoint
    assert_refused(code, err, baseline_run, "--variant baseline has no filter module, --variant basnet needs one")
    assert not os.path.exists(out)
    assert printed == ""    # refused before the data is read (main prints "data: ..." once it is)
    code, printed, err = run_main(base + ["--variant", "baseline", "--hidden_dim", "64"], capsys)
    # no traceback (was: RuntimeError: size mismatch), the mismatch named
    assert_refused(code, err, baseline_run, "--hidden_dim 32 there, 64 here")
    assert not os.path.exists(out)
    assert printed == ""
    code, _, err = run_main(base + ["--variant", "baseline"], capsys)
    assert code == 0, err
    assert sorted(f for f in os.listdir(out) if not f.startswith("events.")) == ["config.json", "last.pt",
                                                                                 "predictions.json", "results.json",
                                                                                 "train_log.txt"]


@pytest.mark.parametrize("extra, message", [
    # shapes the data decides: checked after reading it, still before the folder exists
    (["--variant", "base_bg"], "3 CAS outputs there, 4 here (3 classes + background, --variant base_bg)"),
    (["--variant", "baseline", "--modal", "rgb"], "features 16 wide there, 8 here"),
])
def test_checkpoint_not_fitting_the_data_leaves_no_folder(tiny_data, baseline_run, tmp_path, capsys, extra, message):
    out = str(tmp_path / "from_checkpoint")
    code, _, err = run_main(TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "1", "--model_file", baseline_run,
                                         "--output_path", out] + extra, capsys)
    assert_refused(code, err, baseline_run, message)
    assert not os.path.exists(out)


def test_folder_of_a_refused_start_is_reused_but_not_a_started_run(tiny_data, tmp_path, capsys):
    # an older version wrote config.json before refusing: that folder is no obstacle
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"hidden_dim": 64}))
    args = TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "1", "--seed", "0", "--output_path", str(out)]
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["hidden_dim"] == 32
    # a folder with anything more is another run's
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.json").write_text("{}")
    (started / "train_log.txt").write_text("step 1 loss_total 1.0\n")
    code, _, err = run_main(TINY_ARGS + ["--data_path", tiny_data, "--output_path", str(started)], capsys)
    assert_refused(code, err, str(started), "--resume")
    assert (started / "train_log.txt").read_text() == "step 1 loss_total 1.0\n"


def test_unwritable_output_folder_is_refused_before_any_work(tiny_data, unwritable_dir, capsys):
    target = os.path.join(unwritable_dir, "run")
    code, out, err = run_main(TINY_ARGS + ["--data_path", tiny_data, "--output_path", target], capsys)
    assert_refused(code, err, "--output_path", target, "cannot be written")
    assert out == ""     # refused before the data was read (main prints "data: ..." once it is)
    assert not os.path.exists(target)
