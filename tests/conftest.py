"""Tiny datasets written in the release layout, built by the tests themselves."""
import hashlib
import json
import os
import runpy
import subprocess
import sys
import traceback
import warnings

# The test models are tiny: one thread is fastest, and several OpenMP threads per process
# slow down by orders of magnitude when processes (DataLoader workers, torchrun ranks,
# subprocesses) compete for the cores. Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SEG = 16 / 25


def write_dataset(root, num_train=24, num_test=12, num_classes=3, dim=8, length=(40, 80), seed=0):
    """A small, easy dataset: each video has one class; action segments carry that class's
    pattern on top of noise. Returns the database written to gt.json."""
    rng = np.random.default_rng(seed)
    classes = [f"Class{c}" for c in range(num_classes)]
    patterns = rng.normal(size=(num_classes, 2, dim)) * 2
    database = {}
    for split, count in (("train", num_train), ("test", num_test)):
        names = []
        for i in range(count):
            video = f"video_{split}_{i:04d}"
            c = i % num_classes
            L = int(rng.integers(*length))
            feats = rng.normal(size=(2, L, dim)) * 0.5
            anns = []
            start = int(rng.integers(2, L // 4))
            while start < L - 6:
                n = int(rng.integers(4, 9))
                feats[:, start:start + n] += patterns[c][:, None, :]
                anns.append({"segment": [f"{start * SEG:.2f}", f"{(start + n) * SEG:.2f}"], "label": classes[c]})
                start += n + int(rng.integers(5, 15))
            for s, stream in enumerate(("rgb", "flow")):
                folder = os.path.join(root, "features", split, stream)
                os.makedirs(folder, exist_ok=True)
                np.save(os.path.join(folder, video + ".npy"), feats[s].astype(np.float32))
            database[video] = {"subset": split, "annotations": anns}
            names.append(video)
        with open(os.path.join(root, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": database}, f)
    return database


TINY_ARGS = ["--dataset", "custom", "--num_segments", "32", "--hidden_dim", "32", "--batch_size", "8",
             "--lr", "1e-3", "--no_progress", "--device", "cpu"]
# the same for test.py and visualize.py, which take no training option
TEST_ARGS = ["--dataset", "custom", "--num_segments", "32", "--batch_size", "8", "--no_progress", "--device", "cpu"]


@pytest.fixture
def tiny_data(tmp_path):
    root = str(tmp_path / "data")
    write_dataset(root)
    return root


def folder_digest(folder):
    """{relative path: SHA-1 of the content} of every file below a folder: a shared run's
    fixture compares it after the tests that read the run, so that a test which changed the
    run instead of a copy of it fails."""
    digest = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return digest


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory):
    """The tiny dataset written once for the whole session (the same files as tiny_data's),
    for the runs several tests share. Read-only: a test that changes data copies it first."""
    root = str(tmp_path_factory.mktemp("shared") / "data")
    write_dataset(root)
    before = folder_digest(root)
    yield root
    assert folder_digest(root) == before, "a test changed the shared dataset instead of a copy"


# the warning filters of a fresh interpreter started without -W options
FRESH_WARNING_FILTERS = [("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, ""),
                         ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""),
                         ("ignore", ResourceWarning, "")]


@pytest.fixture
def in_process(capfd):
    """run(args, script="main.py"): what subprocess.run([python, script] + args, cwd=ROOT,
    capture_output=True, text=True) gives, but run in this process: the script's own
    `__main__` block (so its entry-point wrapper and exit status), without a new interpreter
    importing torch again. The exit status is SystemExit's; an uncaught exception gives 1
    and its traceback on stderr; the warnings a fresh interpreter shows are added to stderr
    (pytest would otherwise keep them to itself). For the checks of one command's outcome;
    what only a real process shows (a kill, worker processes, torchrun) runs in one."""
    def run(args, script="main.py"):
        path = os.path.join(ROOT, script)
        argv, path_list, cwd = sys.argv, list(sys.path), os.getcwd()
        capfd.readouterr()  # what this test printed before is not the command's
        sys.argv = [path] + [str(a) for a in args]
        os.chdir(ROOT)
        code = 0
        try:
            with warnings.catch_warnings(record=True) as shown:
                warnings.resetwarnings()
                for action, category, module in reversed(FRESH_WARNING_FILTERS):
                    warnings.filterwarnings(action, category=category, module=module)
                try:
                    runpy.run_path(path, run_name="__main__")
                except SystemExit as e:
                    if e.code is None or isinstance(e.code, int):
                        code = e.code or 0
                    else:  # sys.exit("message"): the interpreter prints it, status 1
                        print(e.code, file=sys.stderr)
                        code = 1
                except Exception:  # noqa: BLE001 (the interpreter's own handling)
                    traceback.print_exc()
                    code = 1
        finally:
            sys.argv, sys.path[:] = argv, path_list
            os.chdir(cwd)
        out, err = capfd.readouterr()
        err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
                       for w in shown)
        return subprocess.CompletedProcess([sys.executable, path] + list(args), code, out, err)
    return run


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder this process cannot write into: a read-only folder for a normal user; for
    root (who writes anywhere the permissions forbid) a folder of sysfs, which refuses new
    files whoever asks."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        yield str(folder)
        folder.chmod(0o755)
        return
    import tempfile
    try:
        tempfile.TemporaryFile(dir="/sys").close()
    except OSError:
        yield "/sys"
        return
    pytest.skip("no unwritable folder available to this user")
