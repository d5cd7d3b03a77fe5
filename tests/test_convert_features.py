"""public_sets/ and scripts/convert_features.py: small files written in each public
source format (W-TALC, ActionFormer, ACM-Net, A2CL-PT) converted into the release layout."""
import json
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from public_sets.a2clpt import A2CLPTReader  # noqa: E402
from public_sets.acmnet import ACMNetReader  # noqa: E402
from public_sets.actionformer import ActionFormerReader  # noqa: E402
from public_sets.convert import convert, train_command  # noqa: E402
from public_sets.wtalc import WTALCReader  # noqa: E402
from dataset import DataError  # noqa: E402

SCRIPT = os.path.join(ROOT, "scripts", "convert_features.py")


# ----------------------------------------------------------------------------- source writers
class Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 `str` (BINSTRING opcodes), as the W-TALC files
    written by Python 2 hold them: Python 3 needs encoding='latin1' (or 'bytes') to read
    arrays inside them."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _binstring(self, data):
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)

    def save_bytes(self, obj):
        self._binstring(obj)
        self.memoize(obj)

    def save_str(self, obj):
        self._binstring(obj.encode("utf-8"))
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def save_py2_object_array(path, items):
    """items: a list (-> an (N,) object array) or a dict (-> a 0-d object array, as np.save
    writes a dict)."""
    if isinstance(items, dict):
        arr = np.empty((), dtype=object)
        arr[()] = items
    else:
        arr = np.empty(len(items), dtype=object)
        for i, x in enumerate(items):
            arr[i] = x
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": arr.shape})
        Py2Pickler(f, protocol=2).dump(arr)


def save_object_array(path, items):
    arr = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        arr[i] = x
    np.save(path, arr, allow_pickle=True)


def feats(rng, length, zero=False):
    a = rng.normal(size=(length, 2048)).astype(np.float32)
    return np.zeros_like(a) if zero else a


CLASSES3 = ["Archery", "BMX", "Curling"]


def write_wtalc_thumos(root, rng):
    """A W-TALC THUMOS14-style set: 'S' arrays, Python-2 pickles, (N, 1) durations."""
    videos = [  # name, subset, L, segments, labels, labels_all, duration
        ("video_validation_0000001", "validation", 20, [[1.0, 3.2]], ["Archery"], ["Archery"], 12.8),
        ("video_validation_0000002", "validation", 15, [[0.5, 2.0], [4.0, 5.5]], ["Archery", "BMX"], ["BMX"], 9.6),
        ("video_test_0000001", "test", 30, [[5.0, 99.0], [25.0, 30.0], [1.0, 2.0]], ["Curling"] * 3, ["Curling"], 19.2),
        ("video_test_0000270", "test", 10, [[1.0, 2.0]], ["BMX"], [], 6.4),
        ("video_test_0000002", "test", 8, [[1.0, 2.0]], ["BMX"], ["BMX"], 5.12),
        ("video_test_0000003", "test", 1, [[0.1, 0.3]], ["BMX"], ["BMX"], 0.64),
        ("video_test_0000004", "test", 0, [[0.1, 0.3]], ["BMX"], ["BMX"], 0.64),
    ]
    arrays = []
    for name, _, L, *_ in videos:
        a = feats(rng, L, zero=name == "video_test_0000002")
        if name == "video_test_0000003":
            a[:] = 0
            a[0, 5] = 1.0
        if L == 0:
            a = np.zeros((0, 2048), np.float32)
        arrays.append(a)
    features = os.path.join(root, "Thumos14reduced-I3D-JOINTFeatures.npy")
    save_py2_object_array(features, arrays)
    ann = os.path.join(root, "Thumos14reduced-Annotations")
    os.makedirs(ann)
    np.save(os.path.join(ann, "videoname.npy"), np.array([v[0].encode() for v in videos]))
    np.save(os.path.join(ann, "subset.npy"), np.array([v[1].encode() for v in videos]))
    np.save(os.path.join(ann, "classlist.npy"), np.array([c.encode() for c in CLASSES3]))
    save_py2_object_array(os.path.join(ann, "segments.npy"), [v[3] for v in videos])
    save_py2_object_array(os.path.join(ann, "labels.npy"), [v[4] for v in videos])
    save_object_array(os.path.join(ann, "labels_all.npy"), [[lab.encode() for lab in v[5]] for v in videos])
    np.save(os.path.join(ann, "duration.npy"), np.array([[v[6]] for v in videos]))
    np.save(os.path.join(ann, "original_fps.npy"), np.array([30.0] * len(videos)))
    np.save(os.path.join(ann, "extracted_fps.npy"), np.array([10] * len(videos)))
    with open(os.path.join(ann, "Ambiguous_test.txt"), "w") as f:
        f.write("video_test_0000001  3.0 4.0\n")
    return features, ann, {v[0]: a for v, a in zip(videos, arrays)}


def read_gt(out):
    with open(os.path.join(out, "gt.json")) as f:
        return json.load(f)


def read_lines(path):
    with open(path) as f:
        return f.read().split()


def assert_halves(out, split, video, source):
    rgb = np.load(os.path.join(out, "features", split, "rgb", video + ".npy"))
    flow = np.load(os.path.join(out, "features", split, "flow", video + ".npy"))
    assert rgb.dtype == np.float32 and flow.dtype == np.float32
    np.testing.assert_array_equal(rgb, source[:, :1024])
    np.testing.assert_array_equal(flow, source[:, 1024:])


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def wtalc(tmp_path, rng):
    return write_wtalc_thumos(str(tmp_path), rng)


# ----------------------------------------------------------------------------- W-TALC
def test_wtalc_thumos(tmp_path, wtalc):
    features, ann, source = wtalc
    out = str(tmp_path / "out")
    lines = []
    report = convert(WTALCReader(features, ann), out, progress=False, log=lines.append)
    gt = read_gt(out)
    db = gt["database"]
    assert report.benchmark == "thumos14"            # from the name Thumos14reduced-...
    assert gt["feature_grid"] == {"step": 0.64, "start": 0.0}
    assert read_lines(os.path.join(out, "classes.txt")) == CLASSES3
    assert read_lines(os.path.join(out, "split_train.txt")) == ["video_validation_0000001", "video_validation_0000002"]
    assert read_lines(os.path.join(out, "split_test.txt")) == ["video_test_0000001"]
    for video in read_lines(os.path.join(out, "split_train.txt")):
        assert db[video]["subset"] == "train"
        assert_halves(out, "train", video, source[video])
    assert_halves(out, "test", "video_test_0000001", source["video_test_0000001"])
    v = db["video_validation_0000002"]
    assert v["annotations"] == [{"label": "Archery", "segment": [0.5, 2.0]}, {"label": "BMX", "segment": [4.0, 5.5]}]
    assert v["labels"] == ["BMX"] and v["duration"] == 9.6 and v["fps"] == 30.0
    assert "feature_grid" not in v and "source_name" not in v
    # every test segment as given, past the duration (19.2 s) too; the duration covers them
    assert db["video_test_0000001"]["subset"] == "test"
    assert db["video_test_0000001"]["annotations"] == [{"label": "Curling", "segment": [5.0, 99.0]},
                                                      {"label": "Curling", "segment": [25.0, 30.0]},
                                                      {"label": "Curling", "segment": [1.0, 2.0]}]
    assert db["video_test_0000001"]["duration"] == 99.0 and db["video_test_0000001"]["source_duration"] == 19.2
    assert report.durations == {"video_test_0000001": {"source": 19.2, "written": 99.0,
                                                       "why": "annotations end at 99 s"}}
    # the release's left-out test video; test videos with zero, too few or no feature rows
    # stay in the ground truth (misses), out of the test split
    assert report.excluded == ["video_test_0000270"]
    assert report.skipped == {}
    assert report.missing_features == {"video_test_0000002": {"reason": "all feature rows zero", "instances": 1},
                                       "video_test_0000003": {"reason": "fewer than 2 non-zero feature rows",
                                                              "instances": 1},
                                       "video_test_0000004": {"reason": "no feature row", "instances": 1}}
    for video in ("video_test_0000002", "video_test_0000003", "video_test_0000004"):
        assert db[video]["subset"] == "test" and len(db[video]["annotations"]) == 1
        assert not os.path.exists(os.path.join(out, "features", "test", "rgb", video + ".npy"))
    assert report.label_mismatch == ["video_validation_0000002"]
    assert any("video_validation_0000002" in line and line.startswith("warning") for line in lines)
    with open(os.path.join(out, "Ambiguous_test.txt")) as f:
        assert f.read() == "video_test_0000001  3.0 4.0\n"
    record = json.load(open(os.path.join(out, "conversion.json")))
    assert record["benchmark"] == "thumos14" and record["drop_missing"] is False
    assert sorted(record["missing_features"]) == ["video_test_0000002", "video_test_0000003", "video_test_0000004"]
    assert train_command(report) == "python main.py --dataset thumos14 --data_path " + out
    assert record["train_command"] == train_command(report)


def test_wtalc_keeps_left_out_videos_on_request(tmp_path, wtalc):
    features, ann, source = wtalc
    out = str(tmp_path / "out")
    report = convert(WTALCReader(features, ann), out, exclude=(), min_rows=1, progress=False)
    db = read_gt(out)["database"]
    # 270: segment labels but empty video-level labels (as in W-TALC): kept, warned
    assert db["video_test_0000270"]["labels"] == [] and "video_test_0000270" in report.label_mismatch
    assert "video_test_0000003" in read_lines(os.path.join(out, "split_test.txt"))   # one row is enough
    assert_halves(out, "test", "video_test_0000270", source["video_test_0000270"])


def test_wtalc_activitynet_names(tmp_path, rng):
    root = str(tmp_path)
    arrays = [feats(rng, 12), feats(rng, 9), feats(rng, 7)]
    features = os.path.join(root, "ActivityNet1.2-I3D-JOINTFeatures.npy")
    save_object_array(features, arrays)
    ann = os.path.join(root, "ActivityNet1.2-Annotations")
    os.makedirs(ann)
    np.save(os.path.join(ann, "videoname.npy"), np.array([b"video_1", b"video_2", b"video_3"]))
    np.save(os.path.join(ann, "subset.npy"), np.array([b"training", b"validation", b"training"]))
    np.save(os.path.join(ann, "classlist.npy"), np.array([c.encode() for c in CLASSES3]))
    save_object_array(os.path.join(ann, "segments.npy"), [[[1.0, 2.0]], [[0.0, 7.0]], [[2.0, 3.0]]])
    save_object_array(os.path.join(ann, "labels.npy"), [["Archery"], ["BMX"], ["Curling"]])
    save_object_array(os.path.join(ann, "labels_all.npy"), [["Archery"], ["BMX"], ["Curling"]])
    np.save(os.path.join(ann, "duration.npy"), np.array([7.68, 5.76, 4.48]))   # 1-D here
    np.save(os.path.join(ann, "url.npy"), np.array([b"https://www.youtube.com/watch?v=sJFgo9H6zNo",
                                                    b"https://www.youtube.com/watch?v=V1zhqaGFY2A",
                                                    b"https://www.youtube.com/watch?v=-E9YQ_Uhu50"]))
    out = str(tmp_path / "out")
    report = convert(WTALCReader(features, ann), out, progress=False)
    db = read_gt(out)["database"]
    assert read_lines(os.path.join(out, "split_train.txt")) == ["v_-E9YQ_Uhu50", "v_sJFgo9H6zNo"]
    assert read_lines(os.path.join(out, "split_test.txt")) == ["v_V1zhqaGFY2A"]
    assert db["v_V1zhqaGFY2A"]["subset"] == "validation" and db["v_sJFgo9H6zNo"]["subset"] == "training"
    assert report.benchmark == "anet12"               # from the name ActivityNet1.2-...
    assert db["v_V1zhqaGFY2A"]["source_name"] == "video_2" and db["v_V1zhqaGFY2A"]["duration"] == 7.0
    assert db["v_V1zhqaGFY2A"]["annotations"] == [{"label": "BMX", "segment": [0.0, 7.0]}]   # as given
    assert report.durations == {"v_V1zhqaGFY2A": {"source": 5.76, "written": 7.0, "why": "annotations end at 7 s"}}
    assert_halves(out, "test", "v_V1zhqaGFY2A", arrays[1])
    assert not os.path.exists(os.path.join(out, "Ambiguous_test.txt"))
    out2 = str(tmp_path / "out2")
    convert(WTALCReader(features, ann, names="source"), out2, progress=False)
    assert read_lines(os.path.join(out2, "split_test.txt")) == ["video_2"]


# ----------------------------------------------------------------------------- ActionFormer
def write_actionformer(root, rng, anet=False):
    fdir = os.path.join(root, "i3d_features")
    os.makedirs(fdir)
    if anet:
        db = {"sJFgo9H6zNo": {"subset": "training", "duration": 10.0, "fps": 30.0,
                              "annotations": [{"label": "BMX", "segment": [1.0, 4.0], "label_id": 1}]},
              "V1zhqaGFY2A": {"subset": "validation", "duration": 8.0, "fps": 24.0,
                              "annotations": [{"label": "Archery", "segment": [0.5, 9.0], "label_id": 0}]},
              "ZZZtestingZ": {"subset": "testing", "duration": 8.0, "annotations": []}}
        lengths = {"sJFgo9H6zNo": 15, "V1zhqaGFY2A": 12, "ZZZtestingZ": 12}
        prefix = "v_"
    else:
        db = {"video_validation_0000051": {"subset": "Validation", "duration": 20.0, "fps": 30.0, "annotations": [
                  {"label": "Curling", "segment": [2.0, 3.5], "segment(frames)": [60, 105], "label_id": 2}]},
              "video_validation_0000052": {"subset": "Validation", "duration": 12.0, "fps": 30.0, "annotations": [
                  {"label": "Archery", "segment": [1.0, 2.0], "segment(frames)": [30, 60], "label_id": 0}]},
              "video_test_0000004": {"subset": "Test", "duration": 30.0, "fps": 25.0, "annotations": [
                  {"label": "BMX", "segment": [0.1, 1.1], "segment(frames)": [2, 27], "label_id": 1}]},
              "video_test_0000005": {"subset": "Test", "duration": 30.0, "fps": 25.0, "annotations": [
                  {"label": "BMX", "segment": [0.1, 1.1], "segment(frames)": [2, 27], "label_id": 1}]}}
        lengths = {"video_validation_0000051": 146, "video_validation_0000052": 86, "video_test_0000004": 184}
        prefix = ""   # video_test_0000005 has no feature file
    arrays = {}
    for video, L in lengths.items():
        arrays[video] = feats(rng, L)
        np.save(os.path.join(fdir, prefix + video + ".npy"), arrays[video])
    path = os.path.join(root, "annotations.json")
    with open(path, "w") as f:
        json.dump({"version": "x", "database": db}, f)
    return fdir, path, arrays


def test_actionformer_thumos_grid(tmp_path, rng):
    fdir, ann, arrays = write_actionformer(str(tmp_path), rng)
    out = str(tmp_path / "out")
    report = convert(ActionFormerReader(fdir, ann, benchmark="thumos14"), out, progress=False)
    gt = read_gt(out)
    db = gt["database"]
    assert read_lines(os.path.join(out, "classes.txt")) == CLASSES3          # label_id order
    grid30 = {"step": 4 / 30, "start": 6 / 30}
    assert gt["feature_grid"] == grid30                                      # the most common one
    assert "feature_grid" not in db["video_validation_0000051"]
    assert db["video_test_0000004"]["feature_grid"] == {"step": 4 / 25, "start": 6 / 25}
    # window i (frames 4i .. 4i+15) is centred at (4i + 8) / fps: the middle of its cell
    g = db["video_test_0000004"]["feature_grid"]
    for i in (0, 7, 100):
        assert g["start"] + (i + 0.5) * g["step"] == pytest.approx((4 * i + 8) / 25)
    assert db["video_validation_0000051"]["subset"] == "train" and db["video_test_0000004"]["subset"] == "test"
    assert db["video_validation_0000051"]["annotations"] == [{"label": "Curling", "segment": [2.0, 3.5]}]
    assert db["video_validation_0000051"]["fps"] == 30.0 and "labels" not in db["video_validation_0000051"]
    # no feature file: kept in the ground truth (ActionFormer's evaluator scores every test video)
    assert report.skipped == {}
    assert report.missing_features == {"video_test_0000005": {"reason": "no feature file", "instances": 1}}
    assert db["video_test_0000005"]["annotations"] == [{"label": "BMX", "segment": [0.1, 1.1]}]
    assert read_lines(os.path.join(out, "split_test.txt")) == ["video_test_0000004"]
    assert_halves(out, "train", "video_validation_0000052", arrays["video_validation_0000052"])
    assert train_command(report).split()[3] == "thumos14"


def test_actionformer_activitynet(tmp_path, rng):
    fdir, ann, arrays = write_actionformer(str(tmp_path), rng, anet=True)
    out = str(tmp_path / "out")
    report = convert(ActionFormerReader(fdir, ann, benchmark="anet13"), out, progress=False)
    gt = read_gt(out)
    assert gt["feature_grid"] == {"step": 0.64, "start": 0.0}
    assert all("feature_grid" not in v for v in gt["database"].values())
    assert read_lines(os.path.join(out, "split_train.txt")) == ["sJFgo9H6zNo"]
    assert read_lines(os.path.join(out, "split_test.txt")) == ["V1zhqaGFY2A"]
    assert gt["database"]["V1zhqaGFY2A"]["subset"] == "validation"
    assert gt["database"]["V1zhqaGFY2A"]["annotations"][0]["segment"] == [0.5, 9.0]
    assert report.skipped == {"subset 'testing' not used": ["ZZZtestingZ"]}
    assert_halves(out, "test", "V1zhqaGFY2A", arrays["V1zhqaGFY2A"])


# ----------------------------------------------------------------------------- ACM-Net
def test_acmnet(tmp_path, rng):
    root = str(tmp_path / "ActivityNet13")
    db = {"v_aaa": {"subset": "train", "duration": 10.0, "annotations": [{"label": "BMX", "segment": ["1.0", "4.0"]}]},
          "v_bbb": {"subset": "val", "duration": 5.0, "annotations": [{"label": "Curling", "segment": [1.0, 6.0]}]},
          "v_ccc": {"subset": "val", "duration": 5.0, "annotations": [{"label": "Archery", "segment": [1.0, 2.0]}]}}
    arrays = {"v_aaa": feats(rng, 15), "v_bbb": feats(rng, 8)}
    for split, video in (("train", "v_aaa"), ("test", "v_bbb")):
        os.makedirs(os.path.join(root, split))
        np.save(os.path.join(root, split, video + ".npy"), arrays[video])
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": db}, f)
    with open(os.path.join(root, "split_train.txt"), "w") as f:
        f.write("v_aaa\n")
    with open(os.path.join(root, "split_test.txt"), "w") as f:
        f.write("v_bbb\nv_ccc\n")
    out = str(tmp_path / "out")
    report = convert(ACMNetReader(root), out, progress=False)
    gt = read_gt(out)
    assert report.benchmark == "anet13"                # from the folder name ActivityNet13
    assert read_lines(os.path.join(out, "classes.txt")) == CLASSES3
    assert gt["database"]["v_aaa"] == {"subset": "training", "duration": 10.0,
                                       "annotations": [{"label": "BMX", "segment": [1.0, 4.0]}]}
    assert gt["database"]["v_bbb"]["subset"] == "validation"
    assert gt["database"]["v_bbb"]["annotations"][0]["segment"] == [1.0, 6.0]
    assert report.skipped == {}
    assert report.missing_features == {"v_ccc": {"reason": "no feature file", "instances": 1}}
    assert read_lines(os.path.join(out, "split_test.txt")) == ["v_bbb"]
    assert_halves(out, "train", "v_aaa", arrays["v_aaa"])
    assert_halves(out, "test", "v_bbb", arrays["v_bbb"])


# ----------------------------------------------------------------------------- A2CL-PT
def test_a2clpt(tmp_path, rng):
    root = str(tmp_path)
    train = {"v_aaa": feats(rng, 11), "v_bbb": feats(rng, 6), "v_notinjson": feats(rng, 5)}
    val = {"v_ccc": feats(rng, 9), "v_ddd": feats(rng, 9)}
    ftrain, fval = os.path.join(root, "feature_train.npy"), os.path.join(root, "feature_val.npy")
    np.save(ftrain, train, allow_pickle=True)
    save_py2_object_array(fval, {k.encode(): v for k, v in val.items()})   # Python-2 dict, bytes keys
    db = {"v_aaa": {"subset": "train", "duration": 7.0, "annotations": [{"label": "BMX", "segment": [1.0, 2.0]}]},
          "v_bbb": {"subset": "train", "duration": 3.84, "annotations": [{"label": "Curling", "segment": [0.0, 3.0]}]},
          "v_ccc": {"subset": "val", "duration": 5.76, "annotations": [{"label": "Archery", "segment": [1.5, 2.5]}]},
          "v_ddd": {"subset": "val", "duration": 5.76, "annotations": []}}
    ann = os.path.join(root, "annotation.json")
    with open(ann, "w") as f:
        json.dump({"database": db, "list_classes": CLASSES3, "miscellany": {"fps_extracted": 25, "len_feature_chunk": 16},
                   "set_ambiguous": {"v_ccc": [[3.0, 4.0], [4.5, 5.0]]}}, f)
    out = str(tmp_path / "out")
    report = convert(A2CLPTReader([ftrain, fval], ann, benchmark="anet13"), out, progress=False)
    gt = read_gt(out)
    assert gt["feature_grid"] == {"step": 0.64, "start": 0.0}
    assert read_lines(os.path.join(out, "split_train.txt")) == ["v_aaa", "v_bbb"]
    assert read_lines(os.path.join(out, "split_test.txt")) == ["v_ccc"]
    assert gt["database"]["v_ccc"]["subset"] == "validation"      # the anet13 preset's subset
    assert report.skipped == {"not in annotation.json": ["v_notinjson"], "no annotation": ["v_ddd"]}
    with open(os.path.join(out, "Ambiguous_test.txt")) as f:
        assert f.read() == "v_ccc  3.0 4.0\nv_ccc  4.5 5.0\n"
    assert_halves(out, "train", "v_bbb", train["v_bbb"])
    assert_halves(out, "test", "v_ccc", val["v_ccc"])


# ----------------------------------------------------------------------------- resuming, refusing
def test_resume_skips_done_videos(tmp_path, wtalc):
    features, ann, source = wtalc
    out = str(tmp_path / "out")
    convert(WTALCReader(features, ann), out, progress=False)
    rgb = os.path.join(out, "features", "train", "rgb", "video_validation_0000001.npy")
    flow = os.path.join(out, "features", "test", "flow", "video_test_0000001.npy")
    stamp = os.stat(rgb).st_mtime_ns
    os.remove(flow)                      # as if killed before this file
    report = convert(WTALCReader(features, ann), out, progress=False)
    assert report.resumed == 2 and report.converted == {"train": 2, "test": 1}
    assert os.stat(rgb).st_mtime_ns == stamp
    assert_halves(out, "test", "video_test_0000001", source["video_test_0000001"])
    assert not [n for _, _, files in os.walk(out) for n in files if n.endswith(".tmp")]


def test_refuses_to_replace_foreign_files(tmp_path, wtalc):
    features, ann, _ = wtalc
    out = tmp_path / "out"
    out.mkdir()
    (out / "gt.json").write_text("{}")
    with pytest.raises(DataError, match="not written by this converter"):
        convert(WTALCReader(features, ann), str(out), progress=False)
    (out / "gt.json").unlink()
    wrong = out / "features" / "train" / "rgb"
    wrong.mkdir(parents=True)
    np.save(wrong / "video_validation_0000001.npy", np.zeros((3, 1024), np.float32))
    with pytest.raises(DataError, match="video_validation_0000001"):
        convert(WTALCReader(features, ann), str(out), progress=False)
    assert np.load(wrong / "video_validation_0000001.npy").shape == (3, 1024)   # left alone
    convert(WTALCReader(features, ann), str(out), progress=False, overwrite=True)
    assert np.load(wrong / "video_validation_0000001.npy").shape == (20, 1024)


# ----------------------------------------------------------------------------- bad sources
def one_line_error(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_corrupt_sources(tmp_path, wtalc):
    features, ann, source = wtalc
    arrays = list(source.values())
    # NaN in a video's features
    bad = [a.copy() for a in arrays]
    bad[1][3, 7] = np.nan
    save_py2_object_array(features, bad)
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), str(tmp_path / "o1"), progress=False)
    one_line_error(e, features, "video_validation_0000002", "NaN")
    # a width other than 2048
    bad = [a.copy() for a in arrays]
    bad[0] = bad[0][:, :2000]
    save_py2_object_array(features, bad)
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), str(tmp_path / "o2"), progress=False)
    one_line_error(e, features, "video_validation_0000001", "2048")
    # fields with other row counts than the features
    save_py2_object_array(features, arrays)
    np.save(os.path.join(ann, "subset.npy"), np.array([b"validation"] * 6))
    with pytest.raises(DataError) as e:
        WTALCReader(features, ann)
    one_line_error(e, os.path.join(ann, "subset.npy"), "video_test_0000004", "6 rows")
    np.save(os.path.join(ann, "subset.npy"), np.array([b"validation"] * 2 + [b"test"] * 5))
    # a label not in the class list
    np.save(os.path.join(ann, "classlist.npy"), np.array([b"Archery", b"BMX"]))
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), str(tmp_path / "o3"), progress=False)
    one_line_error(e, os.path.join(ann, "segments.npy"), "video_test_0000001", "'Curling'")


def test_corrupt_json_source(tmp_path, rng):
    fdir, ann, _ = write_actionformer(str(tmp_path), rng)
    with open(ann) as f:
        data = json.load(f)
    data["database"]["video_test_0000004"]["annotations"][0]["segment"] = [5.0, 1.0]
    with open(ann, "w") as f:
        json.dump(data, f)
    with pytest.raises(DataError) as e:
        convert(ActionFormerReader(fdir, ann, benchmark="thumos14"), str(tmp_path / "out"), progress=False)
    one_line_error(e, ann, "video_test_0000004", "before it starts")


# ----------------------------------------------------------------------------- command line
def run_cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=ROOT)


def test_cli(tmp_path, wtalc):
    features, ann, _ = wtalc
    out = str(tmp_path / "out")
    done = run_cli("wtalc", "--features", features, "--annotations", ann, "--out", out, "--no_progress")
    assert done.returncode == 0, done.stderr
    assert "converted 2 training and 1 evaluated videos" in done.stdout
    assert "left out (--exclude): video_test_0000270" in done.stdout
    assert "3 evaluated video(s) without usable features, 3 instance(s): kept in the ground truth" in done.stdout
    assert "the source's duration contradicts the annotations or the features of 1 video(s)" in done.stdout
    assert "video_test_0000001 19.2 s -> 99 s (annotations end at 99 s)" in done.stdout
    assert f"python main.py --dataset thumos14 --data_path {out}\n" in done.stdout
    assert "video_validation_0000002" in done.stderr          # the label warning
    failed = run_cli("wtalc", "--features", str(tmp_path / "missing.npy"), "--annotations", ann,
                     "--out", str(tmp_path / "o2"), "--no_progress")
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1
    assert "missing.npy" in failed.stderr


# ----------------------------------------------------------------------------- end to end
def test_converted_folder_loads(tmp_path, wtalc):
    import dataset
    import options
    features, ann, source = wtalc
    out = str(tmp_path / "out")
    convert(WTALCReader(features, ann), out, progress=False)
    cfg = options.parse_args(["--dataset", "custom", "--data_path", out, "--device", "cpu"])
    classes, train, test = dataset.load_dataset(cfg)
    assert classes == CLASSES3
    assert train.names == ["video_validation_0000001", "video_validation_0000002"]
    assert test.names == ["video_test_0000001"]
    assert train.feature_dim == 2048
    np.testing.assert_array_equal(train.store.gather(np.array([1]), np.arange(15)[None])[0].numpy(),
                                  source["video_validation_0000002"])


def test_acmnet_split_video_absent_from_gt(tmp_path):
    root = tmp_path / "ActivityNet13"
    root.mkdir()
    (root / "gt.json").write_text(json.dumps({"database": {"v_aaa": {"duration": 3.0, "annotations": []}}}))
    (root / "split_train.txt").write_text("v_aaa\n")
    (root / "split_test.txt").write_text("v_zzz\n")
    with pytest.raises(DataError) as e:
        convert(ACMNetReader(str(root)), str(tmp_path / "out"), progress=False)
    one_line_error(e, str(root / "split_test.txt"), "v_zzz", str(root / "gt.json"))


def test_actionformer_folder_loads(tmp_path, rng):
    import dataset
    import options
    fdir, ann, arrays = write_actionformer(str(tmp_path), rng)
    out = str(tmp_path / "out")
    convert(ActionFormerReader(fdir, ann, benchmark="thumos14"), out, progress=False)
    cfg = options.parse_args(["--dataset", "custom", "--data_path", out, "--device", "cpu"])
    classes, train, test = dataset.load_dataset(cfg)
    assert classes == CLASSES3 and test.names == ["video_test_0000004"]
    assert list(train.lengths) == [146, 86]


# ----------------------------------------------------------------------------- what an --out was made from
def second_wtalc(tmp_path):
    """Another W-TALC set with the same file names in another folder (other feature values)."""
    folder = tmp_path / "other"
    folder.mkdir()
    return write_wtalc_thumos(str(folder), np.random.default_rng(1))


def snapshot(out):
    return {os.path.relpath(os.path.join(d, n), out): os.stat(os.path.join(d, n)).st_mtime_ns
            for d, _, files in os.walk(out) for n in files}


def test_another_source_with_overwrite_replaces_the_features(tmp_path, wtalc):
    features, ann, _ = wtalc
    out = str(tmp_path / "out")
    convert(WTALCReader(features, ann), out, exclude=(), min_rows=1, progress=False)
    left_out_rgb = os.path.join(out, "features", "test", "rgb", "video_test_0000270.npy")
    assert os.path.isfile(left_out_rgb)
    mine = [os.path.join(out, "notes.txt"), os.path.join(out, "features", "train", "rgb", "mine.npy")]
    for path in mine:                                  # the user's files: never the converter's to remove
        with open(path, "w") as f:
            f.write("mine")
    features2, ann2, source2 = second_wtalc(tmp_path)
    report = convert(WTALCReader(features2, ann2), out, progress=False, overwrite=True)
    assert report.resumed == 0
    for split, video in (("train", "video_validation_0000001"), ("train", "video_validation_0000002"),
                         ("test", "video_test_0000001")):
        assert_halves(out, split, video, source2[video])          # the new source's values
    assert not os.path.exists(left_out_rgb)             # written by the old conversion only: removed
    assert all(os.path.isfile(path) for path in mine)
    record = json.load(open(os.path.join(out, "conversion.json")))
    assert [s["path"] for s in record["made_from"]["sources"]] == [os.path.abspath(features2), os.path.abspath(ann2)]
    assert record["complete"] is True


def test_same_named_source_from_another_folder_is_refused(tmp_path, wtalc):
    features, ann, source = wtalc
    out = str(tmp_path / "out")
    convert(WTALCReader(features, ann), out, progress=False)
    before = snapshot(out)
    features2, ann2, _ = second_wtalc(tmp_path)
    assert os.path.basename(features2) == os.path.basename(features)
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features2, ann2), out, progress=False)
    one_line_error(e, os.path.abspath(features), os.path.abspath(features2), "--overwrite")
    assert snapshot(out) == before                      # nothing written
    assert_halves(out, "train", "video_validation_0000001", source["video_validation_0000001"])
    done = run_cli("wtalc", "--features", features2, "--annotations", ann2, "--out", out, "--no_progress")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ") and os.path.abspath(features) in done.stderr


def test_resume_needs_the_same_options_and_content(tmp_path, wtalc):
    features, ann, _ = wtalc
    out = str(tmp_path / "out")
    convert(WTALCReader(features, ann), out, progress=False)
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), out, progress=False, drop_missing=True)
    one_line_error(e, "other options", "drop_missing: False there, True now")
    with open(os.path.join(ann, "Ambiguous_test.txt"), "a") as f:      # the source changed in place
        f.write("video_test_0000001  5.0 6.0\n")
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), out, progress=False)
    one_line_error(e, os.path.abspath(ann), "before it changed")


@pytest.mark.parametrize("text", ['{"converter": "public_sets", "made_from": ', '["gt.json"]'])
def test_an_unreadable_record_is_refused_and_overwrite_keeps_the_files_it_cannot_name(tmp_path, wtalc, text):
    features, ann, source = wtalc
    out = tmp_path / "out"
    convert(WTALCReader(features, ann), str(out), progress=False)
    (out / "conversion.json").write_text(text)           # cut short / not an object
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), str(out), progress=False)
    one_line_error(e, str(out / "conversion.json"), "does not say what it was made from", "--overwrite")
    report = convert(WTALCReader(features, ann), str(out), progress=False, overwrite=True)
    assert report.resumed == 0 and (out / "notes.txt").read_text() == "mine"
    assert_halves(str(out), "train", "video_validation_0000001", source["video_validation_0000001"])


def test_features_without_a_record_are_not_resumed(tmp_path, wtalc, rng):
    features, ann, source = wtalc
    out = tmp_path / "out"
    stray = out / "features" / "train" / "rgb"
    stray.mkdir(parents=True)
    other = rng.normal(size=(20, 1024)).astype(np.float32)       # the shape this conversion writes
    np.save(stray / "video_validation_0000001.npy", other)
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), str(out), progress=False)
    one_line_error(e, str(stray / "video_validation_0000001.npy"), "not written by this conversion")
    assert sorted(os.listdir(out)) == ["features"]
    np.testing.assert_array_equal(np.load(stray / "video_validation_0000001.npy"), other)
    report = convert(WTALCReader(features, ann), str(out), progress=False, overwrite=True)
    assert report.resumed == 0
    assert_halves(str(out), "train", "video_validation_0000001", source["video_validation_0000001"])


# ----------------------------------------------------------------------------- empty conversions
def test_a_benchmark_without_training_videos_is_refused_before_the_features_are_read(tmp_path, wtalc, monkeypatch):
    import public_sets.wtalc
    features, ann, _ = wtalc
    out = str(tmp_path / "out")
    read = []
    real = public_sets.wtalc.load_pickled

    def counting(path, what):
        read.append(path)
        return real(path, what)
    monkeypatch.setattr(public_sets.wtalc, "load_pickled", counting)
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann, benchmark="anet12"), out, progress=False)
    one_line_error(e, "--dataset anet12", "no training video", "training subset", "validation 2", "test 5")
    assert os.path.join(ann, "segments.npy") in read and features not in read     # the annotations only
    assert not os.path.exists(out)
    done = run_cli("wtalc", "--features", features, "--annotations", ann, "--out", out, "--no_progress",
                   "--dataset", "anet12")
    assert done.returncode == 2 and done.stderr.startswith("error: --dataset anet12") and done.stderr.count("\n") == 1
    assert not os.path.exists(out)
    done = run_cli("wtalc", "--features", features, "--annotations", ann, "--out", out, "--no_progress")
    assert done.returncode == 0 and "converted 2 training and 1 evaluated videos" in done.stdout


def test_drop_missing_leaving_no_evaluated_video_is_refused(tmp_path, rng, monkeypatch):
    import public_sets.common
    fdir, ann, arrays = write_actionformer(str(tmp_path), rng)
    moved = str(tmp_path / "video_test_0000004.npy")
    os.rename(os.path.join(fdir, "video_test_0000004.npy"), moved)     # no test video has features now
    out = str(tmp_path / "out")
    loaded = []
    real = public_sets.common.npy_load
    monkeypatch.setattr(public_sets.common, "npy_load", lambda path: loaded.append(path) or real(path))
    with pytest.raises(DataError) as e:
        convert(ActionFormerReader(fdir, ann, benchmark="thumos14"), out, progress=False, drop_missing=True)
    one_line_error(e, "--drop_missing", ann, "video_test_0000004: no feature file")
    assert not os.path.exists(out) and loaded == []      # refused before any feature was read
    os.rename(moved, os.path.join(fdir, "video_test_0000004.npy"))
    report = convert(ActionFormerReader(fdir, ann, benchmark="thumos14"), out, progress=False, drop_missing=True)
    assert report.converted == {"train": 2, "test": 1} and len(loaded) == 3       # the patch is the name called
    assert_halves(out, "test", "video_test_0000004", arrays["video_test_0000004"])


def test_a_split_left_empty_by_unusable_features_leaves_nothing_behind(tmp_path, wtalc):
    features, ann, source = wtalc
    out = str(tmp_path / "out")
    # training videos have 20 and 15 rows, the converted test video 30: only the test video's are usable
    with pytest.raises(DataError) as e:
        convert(WTALCReader(features, ann), out, progress=False, min_rows=25)
    one_line_error(e, "training videos", "fewer than 25 non-zero feature rows", "split_train.txt would be empty")
    assert not os.path.exists(out)                       # the test video's files were written, then removed
    report = convert(WTALCReader(features, ann), out, progress=False)
    assert report.resumed == 0 and report.converted == {"train": 2, "test": 1}
    assert_halves(out, "test", "video_test_0000001", source["video_test_0000001"])


# ----------------------------------------------------------------------------- the command line
def test_unwritable_out_is_refused_before_the_source_is_read(tmp_path, unwritable_dir):
    done = run_cli("wtalc", "--features", str(tmp_path / "missing.npy"), "--annotations", str(tmp_path / "none"),
                   "--out", os.path.join(unwritable_dir, "out"), "--no_progress")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: --out ") and "cannot be written" in done.stderr
    assert "missing.npy" not in done.stderr


def test_each_warning_is_printed_once(tmp_path, wtalc):
    features, ann, _ = wtalc
    done = run_cli("wtalc", "--features", features, "--annotations", ann, "--out", str(tmp_path / "out"),
                   "--no_progress")
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert said.count("video_validation_0000002") == 1 and said.count("video-level labels") == 1


# ----------------------------------------------------------------------------- A2CL-PT training labels
def test_a2clpt_video_with_segments_and_label_only_annotations_keeps_both_labels(tmp_path, rng):
    """A2CL-PT's dataset.py (_get_labels) trains on the set of every annotation's 'label' of a
    video, with or without a 'segment'."""
    root = str(tmp_path / "THUMOS14")
    os.makedirs(root)
    train = {"video_validation_0000001": feats(rng, 12), "video_validation_0000002": feats(rng, 10),
             "video_validation_0000003": feats(rng, 9)}
    val = {"video_test_0000001": feats(rng, 14)}
    files = [os.path.join(root, "feature_train.npy"), os.path.join(root, "feature_val.npy")]
    np.save(files[0], train, allow_pickle=True)
    np.save(files[1], val, allow_pickle=True)
    db = {"video_validation_0000001": {"subset": "train", "annotations": [   # mixed: one segment, one label only
              {"label": "BMX", "segment": [1.0, 2.0]}, {"label": "Curling"}]},
          "video_validation_0000002": {"subset": "train", "annotations": [{"label": "Curling", "segment": [0.5, 1.5]}]},
          "video_validation_0000003": {"subset": "train", "annotations": [{"label": "Archery"}]},
          "video_test_0000001": {"subset": "val", "annotations": [{"label": "BMX", "segment": [2.0, 3.0]}]}}
    ann = os.path.join(root, "annotation.json")
    with open(ann, "w") as f:
        json.dump({"database": db, "list_classes": CLASSES3, "miscellany": {"fps_extracted": 25, "len_feature_chunk": 16},
                   "set_ambiguous": {}}, f)
    for protocol, classes in (("a2clpt", CLASSES3), ("paper", ["BMX", "Curling"])):
        out = str(tmp_path / protocol)
        convert(A2CLPTReader(files, ann, protocol=protocol), out, progress=False)
        gt = read_gt(out)["database"]
        assert read_lines(os.path.join(out, "classes.txt")) == classes
        mixed = gt["video_validation_0000001"]
        assert mixed["labels"] == ["BMX", "Curling"]
        assert mixed["annotations"] == [{"label": "BMX", "segment": [1.0, 2.0]}]
        assert "labels" not in gt["video_validation_0000002"]
    assert gt["video_validation_0000002"]["annotations"] == [{"label": "Curling", "segment": [0.5, 1.5]}]
    assert read_gt(str(tmp_path / "a2clpt"))["database"]["video_validation_0000003"]["labels"] == ["Archery"]
