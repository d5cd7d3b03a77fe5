"""video_features.py and extract_features.py on videos the tests write with OpenCV: the
snippet count at 25 fps, the network inputs (RGB scaling and order, flow clipping), resume,
bad videos, shards and --gt. Small frames and crops keep it fast."""
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
import torch

import dataset
import extract_features
import video_features as vf
from i3d import InceptionI3d
from test_i3d import random_i3d

SMALL = dict(resize=40, crop=32)          # the networks accept 32 x 32 crops


def write_video(path, frames, fps, fourcc="MJPG"):
    """frames: (N, H, W, 3) uint8 BGR."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return str(path)


def moving_square(n, h=48, w=64, seed=0):
    """A textured background and a bright square moving 2 pixels per frame."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (5, 5), 0)
    frames = np.repeat(base[None], n, axis=0)
    for i in range(n):
        x = (2 * i) % (w - 12)
        frames[i, 16:28, x:x + 12] = (40, 220, 250)
    return frames


def frames_at_25(n, fps):
    """Frames at 25 fps of n frames at fps: times k / 25 inside [0, n / fps)."""
    return sum(1 for k in range(100000) if k / 25 < n / fps)


@pytest.fixture(scope="module")
def nets():
    return {"rgb": random_i3d(3, seed=0), "flow": random_i3d(2, seed=1)}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory, nets):
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for stream, net in nets.items():
        paths[stream] = str(folder / f"{stream}_imagenet.pt")
        torch.save(net.state_dict(), paths[stream])
    return paths


def spy(net, seen):
    """Record every input of net.features."""
    features = net.features

    def recorded(x):
        seen.append(x.clone())
        return features(x)
    net.features = recorded
    return net


# ----------------------------------------------------------------------------- library
def test_resampling_picks_the_frame_on_screen_and_streams():
    """A fake capture of 30 fps frames numbered 0, 1, ...: output frame k is source frame
    floor(k * 30 / 25), and the first snippet is ready after about 20 source frames."""
    class Capture:
        def __init__(self, n):
            self.n, self.i, self.grabs = n, -1, 0

        def grab(self):
            self.grabs += 1
            self.i += 1
            return self.i < self.n

        def retrieve(self):
            return True, np.full((2, 2, 3), self.i, np.uint8)

    cap = Capture(120)
    frames = vf.resampled_frames(cap, 30)
    first = [int(next(frames)[0, 0, 0]) for _ in range(16)]
    assert first == [k * 30 // 25 for k in range(16)]
    assert cap.grabs <= 20                                  # streamed, not read ahead
    rest = [int(f[0, 0, 0]) for f in frames]
    assert first + rest == [k * 30 // 25 for k in range(100)]
    assert len(first + rest) == frames_at_25(120, 30) == vf.frames_at(120, 30)
    # below 25 fps frames repeat: 20 fps -> source frame floor(k * 20 / 25)
    assert [int(f[0, 0, 0]) for f in vf.resampled_frames(Capture(8), 20)] == [k * 20 // 25 for k in range(10)]
    # NTSC 29.97 fps
    assert vf.frames_at(30000, 30000 / 1001) == 25025


@pytest.mark.parametrize("fps, n, fourcc, ext", [(30, 70, "mp4v", "mp4"), (20, 30, "MJPG", "avi")])
def test_snippet_count(tmp_path, nets, fps, n, fourcc, ext):
    path = write_video(tmp_path / f"clip.{ext}", moving_square(n), fps, fourcc)
    expected = frames_at_25(n, fps) // 16
    assert expected == (3 if fps == 30 else 2) != n // 16     # resampling changes the count
    feats = vf.extract_video(path, nets["rgb"], nets["flow"], workers=0, **SMALL)
    assert set(feats) == {"rgb", "flow"}
    for stream in ("rgb", "flow"):
        assert feats[stream].shape == (expected, 1024) and feats[stream].dtype == np.float32
        assert np.isfinite(feats[stream]).all()


def test_rgb_input_scaling_and_order(tmp_path, nets):
    """A constant-colour video: the network sees R, G, B in that order, as x / 255 * 2 - 1."""
    b, g, r = 200, 120, 40
    frames = np.empty((40, 48, 64, 3), np.uint8)
    frames[:] = (b, g, r)                                  # OpenCV writes BGR
    path = write_video(tmp_path / "colour.avi", frames, 25)
    seen = []
    spy(nets["rgb"], seen)
    try:
        feats = vf.extract_video(path, nets["rgb"], streams=("rgb",), workers=0, batch_size=1, **SMALL)
    finally:
        del nets["rgb"].features
    assert feats["rgb"].shape == (2, 1024)
    assert len(seen) == 2
    x = seen[0]
    assert x.shape == (1, 3, 16, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    by_hand = [r / 255 * 2 - 1, g / 255 * 2 - 1, b / 255 * 2 - 1]    # -0.686, -0.059, 0.569
    for c in range(3):                                     # a codec may move a level or two
        assert abs(x[0, c].mean().item() - by_hand[c]) < 0.03, (c, x[0, c].mean().item(), by_hand[c])
    # the exact scaling, without a codec in between
    raw = np.array([0, 51, 102, 255], np.uint8).reshape(1, 1, 1, 4, 1).repeat(3, axis=4)
    assert vf.rgb_input(raw)[0, :, 0, 0].tolist() == [pytest.approx([-1.0, -0.6, -0.2, 1.0], abs=1e-6)] * 3


def test_resize_and_centre_crop():
    frame = np.zeros((60, 100, 3), np.uint8)
    frame[:, 40:60] = 255                                  # a white band in the middle
    out = vf.resize_crop(frame, resize=30, crop=24)        # 60 x 100 -> 30 x 50 -> 24 x 24
    assert out.shape == (24, 24, 3)
    assert out[:, 12].min() == 255 and out[:, 0].max() == 0
    tall = vf.resize_crop(np.zeros((100, 60, 3), np.uint8), resize=30, crop=30)
    assert tall.shape == (30, 30, 3)


def test_flow_clipped_and_scaled():
    assert vf.scale_flow(np.array([-50, -20, -5, 0, 7, 20, 31.5])).tolist() == \
        pytest.approx([-1, -1, -0.25, 0, 0.35, 1, 1])

    class FakeTVL1:                      # field t is the constant 10 t - 30 (pixels), both channels
        calls = 0

        def calc(self, a, b, flow):
            value = 10.0 * FakeTVL1.calls - 30
            FakeTVL1.calls += 1
            return np.full(a.shape + (2,), value, np.float32)

    saved = vf._TVL1
    vf._TVL1 = FakeTVL1()
    try:
        out = vf.tvl1_snippet(np.zeros((16, 8, 8), np.uint8))
    finally:
        vf._TVL1 = saved
    assert out.shape == (2, 16, 8, 8) and out.dtype == np.float32
    raw = np.array([10.0 * t - 30 for t in range(15)] + [10.0 * 14 - 30])      # last field repeated
    assert out[0, :, 0, 0].tolist() == pytest.approx(np.clip(raw, -20, 20) / 20)


def test_flow_input_of_the_network_is_tvl1_of_the_crops(tmp_path, nets):
    path = write_video(tmp_path / "move.avi", moving_square(20), 25)
    seen = []
    spy(nets["flow"], seen)
    try:
        vf.extract_video(path, flow_weights=nets["flow"], streams=("flow",), workers=0, **SMALL)
    finally:
        del nets["flow"].features
    (x,) = seen
    assert x.shape == (1, 2, 16, 32, 32) and x.min() >= -1 and x.max() <= 1
    _, gray = next(vf.snippets(path, **SMALL))
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    raw = np.stack([tvl1.calc(gray[t], gray[t + 1], None) for t in range(15)])
    want = np.clip(raw, -20, 20) / 20
    np.testing.assert_allclose(x[0, :, :15].permute(1, 2, 3, 0).numpy(), want, atol=1e-6)
    assert torch.equal(x[0, :, 15], x[0, :, 14])
    # the square moves right by 2 * 40 / 48 pixels a frame: x flow about 0.083 there
    assert x[0, 0].mean() > 0 and 0.05 < x[0, 0].max() < 0.15


def test_same_input_same_features_and_worker_processes(tmp_path, nets):
    path = write_video(tmp_path / "clip.avi", moving_square(36), 30)
    a = vf.extract_video(path, nets["rgb"], nets["flow"], workers=0, **SMALL)
    b = vf.extract_video(path, nets["rgb"], nets["flow"], workers=0, **SMALL)
    for s in a:
        assert np.array_equal(a[s], b[s])
    calls = []
    c = vf.extract_video(path, nets["rgb"], nets["flow"], workers=2, progress=lambda d, t: calls.append((d, t)),
                         **SMALL)
    np.testing.assert_array_equal(c["rgb"], a["rgb"])
    # TV-L1 in other processes may differ in the last bits (OpenCV threads)
    np.testing.assert_allclose(c["flow"], a["flow"], rtol=1e-4, atol=1e-6 * np.abs(a["flow"]).max())
    assert calls[-1] == (16, 16)


def test_unusable_videos_raise_video_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    short = write_video(tmp_path / "short.avi", moving_square(18), 30)       # 15 frames at 25 fps
    for path, kind in ((str(empty), vf.VideoError), (str(corrupt), vf.VideoError), (short, vf.VideoTooShort)):
        with pytest.raises(kind) as e:
            list(vf.snippets(path, **SMALL))
        assert path in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_raft_without_torchvision_says_how_to_install():
    with pytest.raises(vf.FlowError) as e:
        vf.I3DExtractor(flow_weights=InceptionI3d(in_channels=2), streams=("flow",), flow="raft")
    assert "pip install torchvision==" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- command line
def run_cli(args, capsys):
    rc = extract_features.run([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, err


def test_cli_extracts_reports_bad_videos_and_resumes(tmp_path, weight_files, capsys, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good_a.avi", moving_square(40), 30)
    write_video(videos / "good_b.mp4", moving_square(34, seed=1), 25, "mp4v")
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "corrupt.avi").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    write_video(videos / "short.avi", moving_square(10), 25)
    (videos / "notes.txt").write_text("not a video")
    out = tmp_path / "MINE"
    common = [videos, "--out", out, "--rgb_weights", weight_files["rgb"], "--flow_weights", weight_files["flow"],
              "--workers", "0", "--resize", "40", "--crop", "32", "--no_progress"]
    rc, err = run_cli(common, capsys)
    assert rc == 1
    tail = err[err.index("3 video(s) skipped:"):]
    for name in ("corrupt", "empty", "short"):
        assert f"  {name}: " in tail
    folder = out / "features" / "test"
    for stream in ("rgb", "flow"):
        assert sorted(os.listdir(folder / stream)) == ["good_a.npy", "good_b.npy"]   # no temporary file left
        assert np.load(folder / stream / "good_a.npy").shape == (frames_at_25(40, 30) // 16, 1024)
        assert np.load(folder / stream / "good_b.npy").shape == (34 // 16, 1024)

    # resume: done videos are not extracted again; a missing stream is
    os.remove(folder / "flow" / "good_b.npy")
    mtime = os.path.getmtime(folder / "rgb" / "good_a.npy")
    calls = []
    extract = vf.I3DExtractor.extract

    def counted(self, path, progress=None, streams=None):
        calls.append((os.path.basename(path), tuple(streams)))
        return extract(self, path, progress, streams)
    monkeypatch.setattr(vf.I3DExtractor, "extract", counted)
    rc, err = run_cli(common + ["--split", "test"], capsys)
    assert rc == 1 and "5 video(s): 1 already extracted, 4 to do" in err
    assert ("good_b.mp4", ("flow",)) in calls and not any(c[0] == "good_a.avi" for c in calls)
    assert os.path.getmtime(folder / "rgb" / "good_a.npy") == mtime
    assert (folder / "flow" / "good_b.npy").exists()
    calls.clear()
    rc, err = run_cli([videos / "good_a.avi", videos / "good_b.mp4"] + common[1:], capsys)
    assert rc == 0 and calls == [] and "2 already extracted, 0 to do" in err


@pytest.mark.parametrize("args, message", [
    (["--streams", "rgb,depth"], "--streams"),
    (["--shard", "0/3"], "--shard"),
    (["--shard", "two"], "--shard"),
    (["--rgb_weights", "absent.pt"], "absent.pt: no such file"),
    (["--streams", "flow"], "--flow_weights"),
    (["--flow", "farneback"], "--flow"),
])
def test_cli_bad_options_one_line_exit_2(tmp_path, capsys, args, message):
    video = write_video(tmp_path / "v.avi", moving_square(20), 25)
    rc, err = run_cli([video, "--out", tmp_path / "out"] + args, capsys)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_cli_weights_of_the_wrong_stream_exit_2(tmp_path, weight_files, capsys):
    video = write_video(tmp_path / "v.avi", moving_square(20), 25)
    rc, err = run_cli([video, "--out", tmp_path / "out", "--streams", "flow", "--flow_weights", weight_files["rgb"]],
                      capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Conv3d_1a_7x7.conv3d.weight" in err


def test_shards_are_disjoint_and_cover_all():
    ids = [f"video_{i:03d}" for i in range(23)]
    shuffled = list(np.random.default_rng(0).permutation(ids))
    for n in (1, 2, 3, 5, 30):
        parts = [extract_features.shard(shuffled, k, n) for k in range(1, n + 1)]
        assert sorted(sum(parts, [])) == ids                        # cover, no repeat
        assert parts == [extract_features.shard(ids, k, n) for k in range(1, n + 1)]   # order-free


class FakeExtractor:
    """Stands in for I3DExtractor in the command-line tests that do not need features."""
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def extract(self, path, progress=None, streams=("rgb", "flow")):
        return {s: np.zeros((3, 1024), np.float32) for s in streams}


def test_cli_shards_write_disjoint_parts(tmp_path, weight_files, capsys, monkeypatch):
    monkeypatch.setattr(extract_features, "I3DExtractor", FakeExtractor)
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(5):
        (videos / f"v{i}.mp4").write_bytes(b"x")
    out = tmp_path / "out"
    done = []
    for k in (1, 2):
        rc, err = run_cli([videos, "--out", out, "--streams", "rgb", "--rgb_weights", weight_files["rgb"],
                           "--shard", f"{k}/2"], capsys)
        assert rc == 0
        now = sorted(os.listdir(out / "features" / "test" / "rgb"))
        done.append(set(now) - set(sum(map(list, done), [])))
    assert done == [{"v0.npy", "v2.npy", "v4.npy"}, {"v1.npy", "v3.npy"}]


def test_cli_gt_writes_a_dataset_the_loader_accepts(tmp_path, weight_files, capsys, monkeypatch):
    monkeypatch.setattr(extract_features, "I3DExtractor", FakeExtractor)
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    for name in ("t1", "t2"):
        (train / f"{name}.mp4").write_bytes(b"x")
    for name in ("e1", "e2"):
        (test / f"{name}.mp4").write_bytes(b"x")
    csv = tmp_path / "labels.csv"
    csv.write_text("video,subset,labels\nt1,train,Jump;Run\nt2,train,Swim\ne1,test,\n")
    out = tmp_path / "MINE"
    common = ["--out", out, "--rgb_weights", weight_files["rgb"], "--flow_weights", weight_files["flow"],
              "--gt", csv]
    assert run_cli([train, "--split", "train"] + common, capsys)[0] == 0
    assert run_cli([test, "--split", "test"] + common, capsys)[0] == 0
    database = dataset.load_annotations(str(out))
    assert database == {
        "e1": {"subset": "test", "annotations": []},
        "e2": {"subset": "test", "annotations": []},          # not in the CSV: --split, no labels
        "t1": {"subset": "train", "annotations": [], "labels": ["Jump", "Run"]},
        "t2": {"subset": "train", "annotations": [], "labels": ["Swim"]},
    }
    assert dataset.read_split(str(out / "split_train.txt")) == ["t1", "t2"]
    assert dataset.read_split(str(out / "split_test.txt")) == ["e1", "e2"]
    for split, names in (("train", ["t1", "t2"]), ("test", ["e1", "e2"])):
        for name in names:
            for stream in ("rgb", "flow"):
                assert out.joinpath("features", split, stream, name + ".npy").is_file()
    with open(out / "gt.json") as f:
        assert json.load(f)["database"]["t1"]["labels"] == ["Jump", "Run"]

    # a training video without a row, or in the wrong subset, is refused before any work
    (train / "t3.mp4").write_bytes(b"x")
    rc, err = run_cli([train, "--split", "train"] + common, capsys)
    assert rc == 2 and "t3" in err and err.count("\n") == 1
    rc, err = run_cli([test / "e1.mp4", "--split", "train"] + common, capsys)
    assert rc == 2 and "e1" in err
    csv.write_text("video,labels\nt1,Jump\n")
    rc, err = run_cli([train, "--split", "train"] + common, capsys)
    assert rc == 2 and "header" in err
