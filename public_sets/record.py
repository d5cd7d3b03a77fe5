"""The record of a conversion (OUT/conversion.json): what its outputs were made from (the
source files, what identifies their content, the options that change outputs) and which
files it wrote, so that a rerun resumes only its own work and --overwrite removes only
the converter's files."""
import hashlib
import json
import os

from dataset import DataError
from utils import file_digest, read_json_object

RECORD = "conversion.json"
# The files every conversion writes beside its features (Ambiguous_test.txt where the source has one).
TOP_FILES = ("gt.json", "classes.txt", "split_train.txt", "split_test.txt", "Ambiguous_test.txt", RECORD)
MIB = 2 ** 20
WHOLE_FILE_BYTES = 2 * MIB   # files up to this size are hashed whole


def identify(path):
    """What identifies the content of a source file or folder, cheaply. A file: its size and
    the SHA-1 of its bytes; beyond WHOLE_FILE_BYTES (a multi-GB pickle of W-TALC features)
    the SHA-1 of its first and last MiB together with its size and mtime. A folder (thousands
    of per-video files): the name, size and mtime of each file in it, hashed; nothing read."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        digest, count = hashlib.sha1(), 0
        with os.scandir(path) as entries:
            for entry in sorted((e for e in entries if e.is_file()), key=lambda e: e.name):
                st = entry.stat()
                digest.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                count += 1
        return {"path": path, "files": count, "listing_sha1": digest.hexdigest()}
    if not os.path.isfile(path):
        return {"path": path, "missing": True}
    st = os.stat(path)
    if st.st_size <= WHOLE_FILE_BYTES:
        return {"path": path, "size": st.st_size, "sha1": file_digest(path, "sha1")}
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        digest.update(f.read(MIB))
        f.seek(-MIB, os.SEEK_END)
        digest.update(f.read(MIB))
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "first_last_mib_sha1": digest.hexdigest()}


def made_from(paths, options):
    """{"sources": [identity of each path], "options": options}, as JSON reads it back."""
    return json.loads(json.dumps({"sources": [identify(p) for p in paths], "options": options}))


def read_record(out):
    """The record in `out` (a dict; {} when unreadable), or None where there is none."""
    return read_json_object(os.path.join(out, RECORD))


def difference(previous, current):
    """How the conversion recorded as `previous` differs from `current` ("" when it does not)."""
    before = previous.get("made_from")
    if not isinstance(before, dict):
        return ("a conversion whose record does not say what it was made from (written by an earlier version "
                "of this converter, or unreadable)")
    if before == current:
        return ""
    old = {s.get("path"): s for s in before.get("sources", [])}
    new = {s["path"]: s for s in current["sources"]}
    if set(old) != set(new):
        return (f"a conversion of {', '.join(p for p in old if p not in new)}, "
                f"not of {', '.join(p for p in new if p not in old)}")
    changed = [p for p in old if old[p] != new[p]]
    if changed:
        return f"a conversion of {changed[0]} as it was before it changed (size, time or content)"
    was, now = before.get("options", {}), current["options"]
    said = [f"{k}: {was.get(k)!r} there, {now.get(k)!r} now" for k in sorted(set(was) | set(now))
            if was.get(k) != now.get(k)]
    return f"a conversion made with other options ({'; '.join(said)})"


def check_out(out, current, overwrite):
    """Whether the conversion into `out` resumes the one recorded there. Refuses (DataError)
    a record of other sources or options, and a gt.json the converter did not write, unless
    overwrite (then nothing is resumed)."""
    previous = read_record(out)
    if previous is None:
        gt = os.path.join(out, "gt.json")
        if os.path.exists(gt) and not overwrite:
            raise DataError(f"{gt} exists and was not written by this converter; choose another --out "
                            "or pass --overwrite")
        return False
    why = difference(previous, current)
    if why and not overwrite:
        raise DataError(f"{out} holds {why} ({os.path.join(out, RECORD)}); choose another --out or pass "
                        "--overwrite (which removes the files that conversion wrote)")
    return not why and not overwrite


def recorded_files(out):
    """The files the conversion recorded in `out` wrote (paths relative to it)."""
    previous = read_record(out) or {}
    files = previous.get("files")
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def remove_files(out, files):
    """Remove the given files of `out` (paths relative to it; never one outside it), then the
    feature folders left empty."""
    root = os.path.abspath(out)
    folders = set()
    for name in files:
        path = os.path.abspath(os.path.join(root, name))
        if os.path.commonpath([root, path]) != root or path == root:
            continue
        if os.path.isfile(path):
            os.remove(path)
        folder = os.path.dirname(path)
        while folder != root and folder.startswith(root):
            folders.add(folder)
            folder = os.path.dirname(folder)
    for folder in sorted(folders, key=len, reverse=True):
        try:
            os.rmdir(folder)
        except OSError:     # not empty (or gone): kept
            pass
