"""Tiny datasets written in the release layout, built by the tests themselves."""
import json
import os
import sys

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
