"""Small helpers shared by the entry points and the library: errors for the user,
seeding, devices, mixed precision, safe file writes, file digests and JSON records read back.

torch is imported by the functions that use it, not here: `python -m eval` (numpy only)
uses this module's entry-point wrapper and file writes."""
import contextlib
import hashlib
import json
import os
import random
import sys
import tempfile

import numpy as np


class UserError(ValueError):
    """Base of the errors caused by input (options, data, checkpoints): the entry points
    print the message as one line `error: ...` and exit with status 2."""


def check_folder_option(path, option, error=UserError):
    """Raise `error` (a UserError) when `path`, given as `option`, names an existing file
    where a folder is expected, or a folder that cannot be created or written (checked on
    the folder or on its nearest existing parent; nothing is created or touched)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise error(f"{option} {path} is a file, not a folder; choose another {option}")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:    # a real probe: permissions, read-only mounts and root's rights all count
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        where = path if existing == os.path.abspath(path) else f"{path} (in {existing})"
        raise error(f"{option} {where} cannot be written ({e.strerror}); choose another {option}") from None


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4     # glibc's mallopt parameters (malloc.h)
_memory_retained = None


def retain_freed_memory():
    """Let this process reuse the memory its tensors free instead of asking the kernel for
    fresh pages each time (glibc's malloc; elsewhere nothing is changed). By default glibc
    serves each allocation above its mmap threshold (128 KiB, raised as such blocks are
    freed, up to 32 MiB) with a new mapping and returns it on free, so every large tensor
    is paid again in page faults and zero-filling; inference on the CPU allocates a large
    tensor per layer. mallopt(M_MMAP_MAX, 0) serves every allocation from the heap and
    mallopt(M_TRIM_THRESHOLD, INT_MAX) keeps freed heap memory for the next allocation,
    as jemalloc or tcmalloc preloaded would (the allocators PyTorch's CPU tuning guide
    recommends). Results do not change. The cost: the process holds on to its peak memory
    until it ends. Process-wide and lasting; returns True when applied (or already
    applied), False where the C library is not glibc."""
    global _memory_retained
    if _memory_retained is None:
        import ctypes
        import platform
        _memory_retained = False
        if platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)
            _memory_retained = (libc.mallopt(_M_MMAP_MAX, 0) == 1
                                and libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1)
    return _memory_retained


def run_entry_point(main, argv):
    """main(argv) for every command: a UserError (or an evaluator's EvalError) ends in one
    line `error: ...` and exit status 2, a file that cannot be written in one line naming it
    (status 2), and Ctrl-C in one line and status 130 (the shell's code for SIGINT), never a
    traceback."""
    from eval import EvalError
    try:
        return main(argv)
    except (UserError, EvalError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except PermissionError as e:
        print(f"error: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


# ----------------------------------------------------------------------------- run helpers
def set_seed(seed):
    import torch
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def seed_worker(worker_id):
    """DataLoader worker_init_fn: numpy and random follow torch's per-worker seed
    (the release passed None here, so all workers shared one NumPy state)."""
    import torch
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def pick_device(name):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA device is available (use --device cpu)")
    return torch.device(name)


def autocast_for(amp, device):
    """torch.autocast for --amp bf16 / fp16 on a GPU; nothing otherwise."""
    import torch
    if amp == "none" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _open_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write):
    """Call write(file_object) on a temporary file beside `path`, then rename it into place,
    so a kill never leaves a truncated file behind."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.fchmod(fd, _open_mode())     # mkstemp's 0600 -> what open() would give (0666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def file_digest(path, algorithm="sha256"):
    """The hex digest of a file's bytes (hashlib's `algorithm`), read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_object(path):
    """The JSON object (dict) in `path`: None when there is no such file, {} when it cannot
    be read or holds something else (a record written by hand, cut short, or not ours)."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def save_json(path, obj, indent=2):
    """indent=None for large files: indented output takes json's slow pure-Python encoder."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=indent).encode()))


def save_npy(path, array):
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array)))


def save_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_torch(path, obj):
    import torch
    atomic_write(path, lambda f: torch.save(obj, f))
