"""video/ and extract_features.py on videos the tests write with OpenCV: the
snippet count at 25 fps, the network inputs (RGB scaling and order, flow clipping), resume,
bad videos, shards and --gt. Small frames and crops keep it fast."""
import hashlib
import json
import multiprocessing.pool
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import dataset
import extract_features
import options
import video.extractor as vextractor
import video.flow as vflow
import video.frames as vframes
import video.inputs as vinputs
import video.outputs as voutputs
from conftest import ROOT
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
    frames = vframes.resampled_frames(cap, 30)
    first = [int(next(frames)[0, 0, 0]) for _ in range(16)]
    assert first == [k * 30 // 25 for k in range(16)]
    assert cap.grabs <= 20                                  # streamed, not read ahead
    rest = [int(f[0, 0, 0]) for f in frames]
    assert first + rest == [k * 30 // 25 for k in range(100)]
    assert len(first + rest) == frames_at_25(120, 30) == vframes.frames_at(120, 30)
    # below 25 fps frames repeat: 20 fps -> source frame floor(k * 20 / 25)
    assert [int(f[0, 0, 0]) for f in vframes.resampled_frames(Capture(8), 20)] == [k * 20 // 25 for k in range(10)]
    # NTSC 29.97 fps
    assert vframes.frames_at(30000, 30000 / 1001) == 25025


@pytest.mark.parametrize("fps, n, fourcc, ext", [(30, 70, "mp4v", "mp4"), (20, 30, "MJPG", "avi")])
def test_snippet_count(tmp_path, nets, fps, n, fourcc, ext):
    path = write_video(tmp_path / f"clip.{ext}", moving_square(n), fps, fourcc)
    expected = frames_at_25(n, fps) // 16
    assert expected == (3 if fps == 30 else 2) != n // 16     # resampling changes the count
    feats = vextractor.extract_video(path, nets["rgb"], nets["flow"], workers=0, **SMALL)
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
        feats = vextractor.extract_video(path, nets["rgb"], streams=("rgb",), workers=0, snippets_per_batch=1, **SMALL)
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
    assert vframes.rgb_input(raw)[0, :, 0, 0].tolist() == [pytest.approx([-1.0, -0.6, -0.2, 1.0], abs=1e-6)] * 3


@pytest.mark.parametrize("h, w", [(180, 320), (320, 180)])
def test_resize_and_centre_crop_of_a_non_square_frame(h, w):
    """A horizontal gradient (column c has level c / 2) and a white 10 x 10 marker in the
    top-left corner of a 180 x 320 (landscape) or 320 x 180 (portrait) frame: shorter side
    90, then a 64 x 64 centre crop. The expected pixels come from the analytic pattern and
    from cv2.resize given the (width, height) computed here; the marker, outside the crop,
    is found where the geometry puts it in the resized frame."""
    frame = np.repeat((np.arange(w) // 2).astype(np.uint8)[None, :, None], h, axis=0).repeat(3, axis=2)
    frame[:10, :10] = 255
    resized = vframes.resize_shorter(frame, 90)
    size = (160, 90) if w > h else (90, 160)                       # (width, height): 320 * 90 / 180 = 160
    assert resized.shape == (size[1], size[0], 3)
    np.testing.assert_array_equal(resized, cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR))
    # the marker: 10 source pixels -> 5 resized ones, in the top-left corner only
    assert resized[:4, :4].min() == 255 and resized[6:, 6:].max() < 255 and resized[:4, -4:].max() < 255
    out = vframes.resize_crop(frame, resize=90, crop=64)
    assert out.shape == (64, 64, 3)
    top, left = (size[1] - 64) // 2, (size[0] - 64) // 2           # 13, 48 (landscape) / 48, 13 (portrait)
    # resized column x samples source column (x + 0.5) * w / size[0] - 0.5: level about half of it
    for j in (0, 31, 63):
        source = (left + j + 0.5) * w / size[0] - 0.5
        assert abs(int(out[32, j, 0]) - source / 2) <= 1, (j, out[32, j, 0], source / 2)
    assert (out[:, 0] == out[0, 0]).all() and (out[0, :] >= out[0, 0]).all()   # levels vary along x only
    np.testing.assert_array_equal(out, resized[top:top + 64, left:left + 64])


def test_flow_input_repeats_only_a_missing_field_crops_clips_and_scales():
    """flow_input of 16 fields keeps them all; of 15 (the video's last snippet) repeats the
    last; fields larger than the crop are centre-cropped; values clipped to 20 and / 20."""
    raw = torch.tensor([-50, -20, -5, 0, 7, 20, 31.5])
    fields = raw.view(7, 1, 1, 1).expand(7, 2, 1, 1)
    assert vflow.flow_input(fields, 1)[0, :, 0, 0].tolist() == pytest.approx([-1, -1, -0.25, 0, 0.35, 1, 1])
    sixteen = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 2, 4, 4)
    assert vflow.flow_input(sixteen, 4)[0, :, 0, 0].tolist() == pytest.approx([t / 20 for t in range(16)])
    fifteen = vflow.flow_input(sixteen[:15], 4)
    assert fifteen.shape == (2, 16, 4, 4)
    assert fifteen[0, :, 0, 0].tolist() == pytest.approx([t / 20 for t in range(15)] + [14 / 20])
    rows = torch.arange(6.0).view(6, 1).expand(6, 9)              # a 6 x 9 field: y = row, x = column
    cols = torch.arange(9.0).view(1, 9).expand(6, 9)
    cropped = vflow.flow_input(torch.stack([cols, rows])[None].expand(16, 2, 6, 9), 4)
    assert cropped[0, 0].mul(20).tolist() == [[2, 3, 4, 5]] * 4          # columns 2..5 of 9
    assert cropped[1, 0].mul(20).tolist() == [[1] * 4, [2] * 4, [3] * 4, [4] * 4]   # rows 1..4 of 6


class NumberedFrames:
    """Stands in for a decoded video: frame i is the constant image i (BGR, 24 x 30), so the
    flow functions can tell which frames they were given."""

    def __init__(self, monkeypatch, n, h=24, w=30):
        self.n = n
        monkeypatch.setattr(vframes, "open_video", lambda path: (cv2.VideoCapture(), 25, n))
        monkeypatch.setattr(vframes, "resampled_frames",
                            lambda cap, fps: (np.full((h, w, 3), i, np.uint8) for i in range(n)))


def fake_pair_flow(calls):
    """A flow function of (prev, next) gray frames recording (prev id, next id, shape) and
    returning the field whose x and y are prev id / 10 everywhere."""
    def flow(prev, nxt):
        calls.append((int(prev[0, 0]), int(nxt[0, 0]), tuple(prev.shape)))
        return np.full(prev.shape + (2,), prev[0, 0] / 10, np.float32)
    return flow


@pytest.fixture(params=["opencv", "torch"])
def flow_backend(request, monkeypatch):
    """Both backends with a fake TV-L1 that records its frame pairs (OpenCV: in this process)."""
    calls = []
    pair = fake_pair_flow(calls)

    class FakeOpenCV:
        def calc(self, a, b, flow):
            return pair(a, b)

    def fake_torch(prev, nxt):
        assert prev.dtype == torch.uint8 and prev.shape == nxt.shape
        return torch.stack([torch.from_numpy(pair(a.numpy(), b.numpy())).permute(2, 0, 1)
                            for a, b in zip(prev, nxt)])
    monkeypatch.setattr(vflow, "_TVL1", FakeOpenCV())
    monkeypatch.setattr("video.tvl1.tvl1_flow", fake_torch)
    return request.param, calls


@pytest.mark.parametrize("frames", [48, 53])
def test_flow_runs_through_the_whole_video(monkeypatch, nets, flow_backend, frames):
    """Field t of the video is frame t -> t + 1 across snippet boundaries: snippet l's field 15
    is 16 l + 15 -> 16 l + 16; only when no frame follows the last snippet (48 frames) is its
    field 15 the repeat of field 14. 53 frames: the last snippet pairs frame 47 with 48."""
    backend, calls = flow_backend
    NumberedFrames(monkeypatch, frames)
    seen = []
    spy(nets["flow"], seen)
    try:
        vextractor.extract_video("numbered", flow_weights=nets["flow"], streams=("flow",), flow_backend=backend,
                         workers=0, flow_batch=20, resize=24, crop=16)
    finally:
        del nets["flow"].features
    pairs = sorted((a, b) for a, b, _ in calls)
    last = 47 if frames == 48 else 48
    assert pairs == [(t, t + 1) for t in range(last)]               # no pair twice, none inside only
    x = torch.cat(seen)                                             # (3, 2, 16, 16, 16)
    assert x.shape == (3, 2, 16, 16, 16)
    got = x[:, 0, :, 0, 0].mul(200).round().int().tolist()          # prev id / 10 / 20 -> prev id
    for l in range(3):
        want = [16 * l + t for t in range(16)]
        if l == 2 and frames == 48:
            want[15] = 46                                           # the video's last field, repeated
        assert got[l] == want, (l, got[l])


def test_flow_before_crop_gets_the_resized_frames_and_crops_the_fields(monkeypatch, nets):
    """flow_before_crop: the flow function sees the whole resized frame (40 x 50 of 48 x 60),
    and the network the centre 32 x 32 of its fields; by default it sees the 32 x 32 crops."""
    calls = []

    def coordinates(a, b, flow):                  # x = column / 10, y = row / 10 of the frame given
        calls.append(a.shape)
        h, w = a.shape
        return np.stack(np.meshgrid(np.arange(w) / 10, np.arange(h) / 10), axis=2).astype(np.float32)
    monkeypatch.setattr(vflow, "_TVL1", type("Fake", (), {"calc": staticmethod(coordinates)})())
    NumberedFrames(monkeypatch, 17, h=48, w=60)
    for before, shape, (top, left) in ((True, (40, 50), (4, 9)), (False, (32, 32), (0, 0))):
        calls.clear()
        seen = []
        spy(nets["flow"], seen)
        try:
            vextractor.extract_video("numbered", flow_weights=nets["flow"], streams=("flow",), flow_backend="opencv",
                             workers=0, flow_before_crop=before, resize=40, crop=32)
        finally:
            del nets["flow"].features
        assert set(calls) == {shape} and len(calls) == 16
        (x,) = seen
        assert x.shape == (1, 2, 16, 32, 32)
        np.testing.assert_allclose(x[0, 0, 3].numpy() * 200, np.tile(np.arange(left, left + 32), (32, 1)), atol=1e-3)
        np.testing.assert_allclose(x[0, 1, 3].numpy() * 200, np.tile(np.arange(top, top + 32)[:, None], (1, 32)),
                                   atol=1e-3)


def test_flow_input_of_the_network_is_tvl1_of_the_crops(tmp_path, nets):
    """The real OpenCV TV-L1 on a 20-frame video: one snippet, its 16 fields between frames
    0..16 (frame 16 opens the dropped tail), none repeated."""
    path = write_video(tmp_path / "move.avi", moving_square(20), 25)
    seen = []
    spy(nets["flow"], seen)
    try:
        vextractor.extract_video(path, flow_weights=nets["flow"], streams=("flow",), flow_backend="opencv", workers=0,
                         **SMALL)
    finally:
        del nets["flow"].features
    (x,) = seen
    assert x.shape == (1, 2, 16, 32, 32) and x.min() >= -1 and x.max() <= 1
    (_, gray), = vframes.snippets(path, **SMALL)
    assert gray.shape == (17, 32, 32)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    raw = np.stack([tvl1.calc(gray[t], gray[t + 1], None) for t in range(16)])
    want = np.clip(raw, -20, 20) / 20
    np.testing.assert_allclose(x[0].permute(1, 2, 3, 0).numpy(), want, atol=1e-6)
    # the square moves right by 2 * 40 / 48 pixels a frame: x flow about 0.083 there
    assert x[0, 0].mean() > 0 and 0.05 < x[0, 0].max() < 0.15


def test_torch_backend_gives_the_flow_of_opencv(tmp_path, nets):
    """tvl1.py through the extractor (the 16 pairs of one snippet in one call) on the moving
    square: the network's flow input is OpenCV's within 0.05 px on average."""
    path = write_video(tmp_path / "move.avi", moving_square(20), 25)
    inputs = {}
    for backend in ("opencv", "torch"):
        seen = []
        spy(nets["flow"], seen)
        try:
            vextractor.extract_video(path, flow_weights=nets["flow"], streams=("flow",), flow_backend=backend, workers=0,
                             flow_batch=16, **SMALL)
        finally:
            del nets["flow"].features
        (inputs[backend],) = seen
    assert inputs["opencv"].abs().max() > 0.04                     # the square moves 1.7 px a frame
    assert (inputs["torch"] - inputs["opencv"]).abs().mean() * 20 < 0.05


def test_same_input_same_features_and_worker_processes(tmp_path, nets):
    path = write_video(tmp_path / "clip.avi", moving_square(36), 30)
    a = vextractor.extract_video(path, nets["rgb"], nets["flow"], flow_backend="opencv", workers=0, **SMALL)
    b = vextractor.extract_video(path, nets["rgb"], nets["flow"], flow_backend="opencv", workers=0, **SMALL)
    for s in a:
        assert np.array_equal(a[s], b[s])
    calls = []
    c = vextractor.extract_video(path, nets["rgb"], nets["flow"], flow_backend="opencv", workers=2, cores=3,
                         progress=lambda d, t: calls.append((d, t)), **SMALL)
    np.testing.assert_array_equal(c["rgb"], a["rgb"])
    # TV-L1 in other processes may differ in the last bits (OpenCV threads)
    np.testing.assert_allclose(c["flow"], a["flow"], rtol=1e-4, atol=1e-6 * np.abs(a["flow"]).max())
    assert calls[-1] == (16, 16)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_threads_and_tvl1_workers_never_exceed_the_cores(device):
    for cores in range(1, 33):
        threads, workers = vflow.plan_threads(cores, "opencv", device)
        assert threads >= 1 and workers >= 0 and threads + workers == cores
        assert workers == (0 if cores == 1 else cores - (1 if device == "cuda" else max(1, round(cores / 6))))
        # tvl1.py: on the GPU from this process; on the CPU in helper threads beside one torch thread
        assert vflow.plan_threads(cores, "torch", device) == ((cores, 0) if device == "cuda" else (1, cores - 1))
        for asked in range(cores + 3):                              # workers asked for: the rest is torch's
            workers = min(asked, cores - 1)                         # at least one thread left
            assert vflow.plan_threads(cores, "opencv", device, asked) == (cores - workers, workers)
            if device == "cpu":
                assert vflow.plan_threads(cores, "torch", device, asked) == (1, workers)
    assert vflow.plan_threads(2, "opencv", "cpu") == (1, 1)
    if device == "cuda":
        with pytest.raises(vflow.FlowError, match="torch flow backend runs on the GPU"):
            vflow.plan_threads(8, "torch", device, 2)
    assert vflow.resolve_backend("auto", device, 2) == "torch"
    assert vflow.resolve_backend("auto", device, 16) == ("torch" if device == "cuda" else "opencv")
    assert vflow.resolve_backend("opencv", device, 2) == "opencv"


def test_extractor_sets_the_planned_threads_in_itself_and_its_workers(nets, monkeypatch):
    """Two workers of one thread (OpenCV and torch) beside a main process of 3 threads on 5
    cores; the caller's thread counts come back on close."""
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")                     # torchrun: 2 processes on this machine
    asked = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: asked.append(pid) or set(range(10)))
    assert vflow.available_cores() == 5 and asked == [0]
    before = torch.get_num_threads(), cv2.getNumThreads()
    with vextractor.I3DExtractor(flow_weights=nets["flow"], streams=("flow",), flow_backend="opencv", workers=2) as ex:
        assert (ex.threads, ex.workers) == (3, 2)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (3, 3)
        counts = ex.flow.pool.map(worker_threads, range(4), chunksize=1)
        assert set(counts) == {(1, 1)}
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
    # tvl1.py on the CPU: two helper threads, and one torch thread for the whole process
    with vextractor.I3DExtractor(flow_weights=nets["flow"], streams=("flow",), flow_backend="torch", workers=2) as ex:
        assert (ex.threads, ex.workers) == (1, 2)
        assert isinstance(ex.flow.pool, multiprocessing.pool.ThreadPool)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
        assert set(ex.flow.pool.map(worker_threads, range(4), chunksize=1)) == {(1, 1)}
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before


def test_torch_backend_helper_threads_give_the_flow_of_this_process(tmp_path, nets):
    """tvl1.py in two helper threads (snippets handed out as they come) gives the features
    it gives in the main process alone, bit for bit (one torch thread either way)."""
    path = write_video(tmp_path / "clip.avi", moving_square(70), 25)
    alone = vextractor.extract_video(path, flow_weights=nets["flow"], streams=("flow",), flow_backend="torch",
                             workers=0, **SMALL)
    helped = vextractor.extract_video(path, flow_weights=nets["flow"], streams=("flow",), flow_backend="torch",
                              workers=2, cores=3, **SMALL)
    assert alone["flow"].shape == (4, 1024)
    np.testing.assert_array_equal(helped["flow"], alone["flow"])


def worker_threads(_):
    return torch.get_num_threads(), cv2.getNumThreads()


def test_unusable_videos_raise_video_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    short = write_video(tmp_path / "short.avi", moving_square(18), 30)       # 15 frames at 25 fps
    for path, kind in ((str(empty), vframes.VideoError), (str(corrupt), vframes.VideoError), (short, vframes.VideoTooShort)):
        with pytest.raises(kind) as e:
            list(vframes.snippets(path, **SMALL))
        assert path in str(e.value) and "\n" not in str(e.value)


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
    extract = vextractor.I3DExtractor.extract

    def counted(self, path, progress=None, streams=None):
        calls.append((os.path.basename(path), tuple(streams)))
        return extract(self, path, progress, streams)
    monkeypatch.setattr(vextractor.I3DExtractor, "extract", counted)
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
    (["--flow_backend", "farneback"], "--flow_backend"),
])
def test_cli_bad_options_one_line_exit_2(tmp_path, capsys, args, message):
    video = write_video(tmp_path / "v.avi", moving_square(20), 25)
    rc, err = run_cli([video, "--out", tmp_path / "out"] + args, capsys)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_cli_out_naming_a_file_exit_2_file_untouched(tmp_path, weight_files, capsys):
    video = write_video(tmp_path / "v.avi", moving_square(20), 25)
    out = tmp_path / "out.txt"
    out.write_text("mine")
    rc, err = run_cli([video, "--out", out, "--rgb_weights", weight_files["rgb"],
                       "--flow_weights", weight_files["flow"]], capsys)
    assert rc == 2 and err == f"error: --out {out} is a file, not a folder; choose another --out\n"
    assert out.read_text() == "mine"


def test_cli_weights_of_the_wrong_stream_exit_2(tmp_path, weight_files, capsys):
    video = write_video(tmp_path / "v.avi", moving_square(20), 25)
    rc, err = run_cli([video, "--out", tmp_path / "out", "--streams", "flow", "--flow_weights", weight_files["rgb"]],
                      capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Conv3d_1a_7x7.conv3d.weight" in err


def test_shards_are_disjoint_and_cover_all():
    ids = [f"video_{i:03d}" for i in range(23)]
    shuffled = list(np.random.default_rng(0).permutation(ids))
    for n in (1, 2, 3, 5, 30):
        parts = [vinputs.shard(shuffled, k, n) for k in range(1, n + 1)]
        assert sorted(sum(parts, [])) == ids                        # cover, no repeat
        assert parts == [vinputs.shard(ids, k, n) for k in range(1, n + 1)]   # order-free


def test_torchrun_processes_split_the_videos_and_rank_0_writes_gt_after_all(tmp_path, weight_files):
    """torchrun with two CPU processes: each extracts its shard (RANK + 1 of WORLD_SIZE);
    gt.json and complete split files are written once, by rank 0, after both finished
    (rank 1 has the long video)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, n in (("v0", 20), ("v1", 160), ("v2", 20)):
        write_video(videos / f"{name}.avi", moving_square(n), 25)
    csv = tmp_path / "labels.csv"
    csv.write_text("video,subset,labels\nv0,train,Jump\nv1,train,Run\nv2,train,Jump\n")
    out = tmp_path / "MINE"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "extract_features.py", str(videos), "--out", str(out), "--streams", "rgb", "--rgb_weights",
           weight_files["rgb"], "--split", "train", "--gt", str(csv), "--device", "cpu", "--resize", "40",
           "--crop", "32", "--no_progress"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert "2 video(s) (shard 1/2 of 3)" in res.stderr and "1 video(s) (shard 2/2 of 3)" in res.stderr
    assert res.stderr.count("wrote ") == 1
    assert sorted(os.listdir(out / "features" / "train" / "rgb")) == ["v0.npy", "v1.npy", "v2.npy"]
    assert np.load(out / "features" / "train" / "rgb" / "v1.npy").shape == (10, 1024)
    assert dataset.read_split(str(out / "split_train.txt")) == ["v0", "v1", "v2"]
    assert sorted(dataset.load_annotations(str(out))) == ["v0", "v1", "v2"]


def test_shard_under_torchrun_is_refused(tmp_path, weight_files, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    video = write_video(tmp_path / "v.avi", moving_square(20), 25)
    rc, err = run_cli([video, "--out", tmp_path / "out", "--streams", "rgb", "--rgb_weights", weight_files["rgb"],
                       "--shard", "1/2"], capsys)
    assert rc == 2 and err.startswith("error: --shard 1/2 and torchrun's 2 processes") and err.count("\n") == 1
    # the environment is torchrun's whole: without --shard this process is part RANK + 1 of WORLD_SIZE
    assert vinputs.placement(None, os.environ, torch.device("cpu"), 0) == ((1, 2), torch.device("cpu"), True)


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


# ----------------------------------------------------------------------------- resume and provenance
class TaggingExtractor(FakeExtractor):
    """Features that say what made them: every value is the first byte of the weights file of
    the stream plus --resize / 1000; counts the videos it extracts."""
    calls, built = [], []

    def __init__(self, rgb_weights, flow_weights, streams, device, **options):
        TaggingExtractor.built.append(streams)
        self.backend = options["flow_backend"]
        self.tags = {s: open(w, "rb").read()[0] + options["resize"] / 1000
                     for s, w in (("rgb", rgb_weights), ("flow", flow_weights)) if w}

    def extract(self, path, progress=None, streams=("rgb", "flow")):
        TaggingExtractor.calls.append(os.path.basename(path))
        return {s: np.full((3, 1024), self.tags[s], np.float32) for s in streams}


@pytest.fixture
def tagging(monkeypatch):
    monkeypatch.setattr(extract_features, "I3DExtractor", TaggingExtractor)
    TaggingExtractor.calls, TaggingExtractor.built = [], []
    return TaggingExtractor.calls


def weights_with_first_byte(path, byte):
    path.write_bytes(bytes([byte]) + b"weights")
    return path


def test_resume_refuses_features_of_other_weights_and_overwrite_replaces_only_them(tmp_path, capsys, tagging):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        (videos / f"{name}.mp4").write_bytes(b"x")
    w1 = weights_with_first_byte(tmp_path / "rgb_1.pt", 1)
    w2 = weights_with_first_byte(tmp_path / "rgb_2.pt", 2)
    out = tmp_path / "out"
    feature = out / "features" / "test" / "rgb" / "a.npy"
    common = [videos, "--out", out, "--streams", "rgb", "--no_progress"]
    assert run_cli(common + ["--rgb_weights", w1], capsys)[0] == 0
    assert np.load(feature)[0, 0] == pytest.approx(1.256) and tagging == ["a.mp4", "b.mp4"]
    (out / "notes.txt").write_text("mine")
    other = out / "features" / "test" / "rgb" / "other.npy"       # not a video of this run
    np.save(other, np.zeros((2, 1024), np.float32))

    # other weights: refused before any extraction, naming the option, the file and the weights
    rc, err = run_cli(common + ["--rgb_weights", w2], capsys)
    assert rc == 2 and err.startswith("error: 2 existing feature file(s) were made otherwise") and err.count("\n") == 1
    assert str(feature) in err and "--rgb_weights" in err and str(w1) in err and "--overwrite" in err
    assert tagging == ["a.mp4", "b.mp4"] and np.load(feature)[0, 0] == pytest.approx(1.256)
    assert len(TaggingExtractor.built) == 1                     # refused before the networks are loaded
    # the same file name with other content is other weights too (the content is compared)
    weights_with_first_byte(w1, 3)
    assert run_cli(common + ["--rgb_weights", w1], capsys)[0] == 2
    weights_with_first_byte(w1, 1)

    # --overwrite extracts them again; the rest of OUT is left alone
    rc, err = run_cli(common + ["--rgb_weights", w2, "--overwrite"], capsys)
    assert rc == 0 and "2 file(s) made otherwise extracted again" in err
    assert np.load(feature)[0, 0] == pytest.approx(2.256) and tagging[2:] == ["a.mp4", "b.mp4"]
    assert (out / "notes.txt").read_text() == "mine" and np.load(other).shape == (2, 1024)
    with open(out / "extraction" / "test" / "a.json") as f:
        record = json.load(f)["streams"]["rgb"]
    assert record["weights"] == {"file": str(w2), "sha256": hashlib.sha256(w2.read_bytes()).hexdigest()}
    # now made from w2: a rerun resumes (nothing to do), with w1 it is refused again
    rc, err = run_cli(common + ["--rgb_weights", w2], capsys)
    assert rc == 0 and "2 already extracted, 0 to do" in err and len(tagging) == 4
    assert run_cli(common + ["--rgb_weights", w1], capsys)[0] == 2


@pytest.mark.parametrize("first, then, option", [
    (["--resize", "256"], ["--resize", "240"], "--resize 256"),
    (["--crop", "224"], ["--crop", "200"], "--crop 224"),
    ([], ["--flow_before_crop"], "--flow_before_crop False"),
])
def test_resume_refuses_features_of_other_recipe_options(tmp_path, capsys, tagging, first, then, option):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    weights = {s: weights_with_first_byte(tmp_path / f"{s}.pt", 7) for s in ("rgb", "flow")}
    common = [video, "--out", tmp_path / "out", "--rgb_weights", weights["rgb"], "--flow_weights", weights["flow"]]
    assert run_cli(common + first, capsys)[0] == 0
    rc, err = run_cli(common + then, capsys)
    assert rc == 2 and f"made with {option}, this run's is" in err and len(tagging) == 1


def test_resume_ignores_the_flow_backend_but_not_another_version_of_the_video(tmp_path, capsys, tagging):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    weights = {s: weights_with_first_byte(tmp_path / f"{s}.pt", 7) for s in ("rgb", "flow")}
    common = [video, "--out", tmp_path / "out", "--rgb_weights", weights["rgb"], "--flow_weights", weights["flow"]]
    assert run_cli(common + ["--flow_backend", "opencv"], capsys)[0] == 0
    with open(tmp_path / "out" / "extraction" / "test" / "v.json") as f:
        assert json.load(f)["streams"]["flow"]["flow_backend"] == "opencv"        # recorded, not compared
    rc, err = run_cli(common + ["--flow_backend", "torch"], capsys)
    assert rc == 0 and "1 already extracted, 0 to do" in err
    video.write_bytes(b"another video")
    rc, err = run_cli(common, capsys)
    assert rc == 2 and f"made from another version of {video}" in err and len(tagging) == 1
    # a moved video (same size and time, other folder) is the same video
    moved = tmp_path / "moved"
    moved.mkdir()
    os.rename(video, moved / "v.mp4")
    assert run_cli(common + ["--overwrite"], capsys)[0] == 2            # no such file: the old path
    assert run_cli([moved / "v.mp4"] + common[1:] + ["--overwrite"], capsys)[0] == 0 and len(tagging) == 2
    assert run_cli([moved / "v.mp4"] + common[1:], capsys)[0] == 0 and len(tagging) == 2


def test_features_without_a_record_are_not_resumed(tmp_path, capsys, tagging, weight_files):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    old = tmp_path / "out" / "features" / "test" / "rgb" / "v.npy"
    old.parent.mkdir(parents=True)
    np.save(old, np.ones((3, 1024), np.float32))
    rc, err = run_cli([video, "--out", tmp_path / "out", "--streams", "rgb", "--rgb_weights", weight_files["rgb"]],
                      capsys)
    assert rc == 2 and f"{old}: no record of what it was made from" in err and tagging == []
    assert np.load(old)[0, 0] == 1
    rc, _ = run_cli([video, "--out", tmp_path / "out", "--streams", "rgb", "--rgb_weights", weight_files["rgb"],
                     "--overwrite"], capsys)
    assert rc == 0 and tagging == ["v.mp4"]            # the fake extractor is the one the command builds


@pytest.mark.parametrize("record", ['{"streams": {"rgb": ', '["rgb"]', '{"streams": ["rgb"]}'])
def test_an_unreadable_record_counts_as_none_and_overwrite_rewrites_it(tmp_path, capsys, tagging, weight_files,
                                                                       record):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    common = [video, "--out", tmp_path / "out", "--streams", "rgb", "--rgb_weights", weight_files["rgb"]]
    assert run_cli(common, capsys)[0] == 0 and tagging == ["v.mp4"]
    path = tmp_path / "out" / "extraction" / "test" / "v.json"
    path.write_text(record)                 # cut short, not an object, streams not an object
    rc, err = run_cli(common, capsys)
    feature = tmp_path / "out" / "features" / "test" / "rgb" / "v.npy"
    assert rc == 2 and f"{feature}: no record of what it was made from" in err and err.count("\n") == 1
    assert run_cli(common + ["--overwrite"], capsys)[0] == 0 and tagging == ["v.mp4", "v.mp4"]
    with open(path) as f:
        assert set(json.load(f)["streams"]) == {"rgb"}
    assert run_cli(common, capsys)[0] == 0 and len(tagging) == 2


def test_an_interrupted_video_resumes_without_a_file_its_record_does_not_describe(tmp_path, capsys, tagging,
                                                                                   monkeypatch):
    """Killed between writing a video's two streams: the next run extracts the missing one and
    keeps the other, whose record says what made it (written before the features)."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    weights = {s: weights_with_first_byte(tmp_path / f"{s}.pt", 5) for s in ("rgb", "flow")}
    common = [video, "--out", tmp_path / "out", "--rgb_weights", weights["rgb"], "--flow_weights", weights["flow"]]
    saved = []
    save_npy = voutputs.save_npy

    def killed_after_one(path, array):
        if saved:
            raise KeyboardInterrupt
        saved.append(path)
        save_npy(path, array)
    monkeypatch.setattr(voutputs, "save_npy", killed_after_one)
    assert run_cli(common, capsys)[0] == 130 and len(saved) == 1
    monkeypatch.setattr(voutputs, "save_npy", save_npy)
    rc, err = run_cli(common, capsys)
    assert rc == 0 and "0 already extracted, 1 to do" in err and len(tagging) == 2
    rc, err = run_cli(common, capsys)
    assert rc == 0 and "1 already extracted, 0 to do" in err


# ----------------------------------------------------------------------------- checks before any work
def test_unwritable_out_is_refused_in_one_line_before_extracting(tmp_path, capsys, tagging, weight_files,
                                                                 unwritable_dir):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    rc, err = run_cli([video, "--out", os.path.join(unwritable_dir, "MINE"), "--streams", "rgb",
                       "--rgb_weights", weight_files["rgb"]], capsys)
    assert rc == 2 and err.startswith("error: --out ") and "cannot be written" in err and err.count("\n") == 1
    assert tagging == [] and TaggingExtractor.built == []
    rc, _ = run_cli([video, "--out", tmp_path / "MINE", "--streams", "rgb", "--rgb_weights", weight_files["rgb"]],
                    capsys)
    assert rc == 0 and tagging == ["v.mp4"]            # the fake extractor is the one the command builds


def unreadable_file(tmp_path):
    """A file this process cannot read (as root, whom permissions do not stop: /proc/self/mem,
    which refuses a read at offset 0)."""
    if os.geteuid() != 0:
        path = tmp_path / "locked.pt"
        path.write_bytes(b"x")
        path.chmod(0)
        return str(path)
    return "/proc/self/mem"


@pytest.mark.parametrize("case", ["folder", "unreadable", "bad shard", "no video"])
def test_argument_checks_come_before_any_video_is_read(tmp_path, capsys, tagging, weight_files, monkeypatch, case):
    """Each of these is refused in one line before the extractor is built or a video opened."""
    opened = []
    identity = voutputs.video_identity
    monkeypatch.setattr(voutputs, "video_identity", lambda path: opened.append(path) or identity(path))
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    args = [video, "--out", tmp_path / "out", "--streams", "rgb", "--rgb_weights", weight_files["rgb"]]
    good = list(args)
    expected = {"folder": ["--rgb_weights", str(tmp_path), "a folder"],
                "unreadable": ["--rgb_weights", unreadable_file(tmp_path), "cannot be read"],
                "bad shard": ["--shard", "3/2"], "no video": []}[case]
    if case == "no video":
        args[0] = tmp_path / "empty"
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "clip.txt").write_text("")
    rc, err = run_cli(args + expected[:2], capsys)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert all(part in err for part in (expected or ["no video file"]))
    assert tagging == [] and TaggingExtractor.built == [] and opened == []
    assert run_cli(good, capsys)[0] == 0          # the same command fixed: both fakes are the names it calls
    assert tagging == ["v.mp4"] and opened


def test_a_folder_stands_for_the_files_with_the_listed_extensions(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.MP4", "b.webm", "c.ts", "d.txt", "e.npy", ".hidden.mp4", "f.avi.part"):
        (folder / name).write_bytes(b"x")
    (folder / "sub.mp4").mkdir()
    assert list(vinputs.list_videos([str(folder)])) == ["a", "b", "c"]
    text = options.extraction_parser().format_help()
    assert all(ext in text for ext in (".mp4", ".webm", ".ts", ".avi", ".mkv")) and "VIDEO_EXTENSIONS" in text


# ----------------------------------------------------------------------------- torchrun placement
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_torchrun_shard_and_device_of_each_process_on_two_nodes(device):
    """Two nodes of two GPUs (torchrun --nnodes 2 --nproc_per_node 2): RANK counts all four
    processes, LOCAL_RANK those of one node. Each takes part RANK + 1 of 4 and, on CUDA, its
    node's GPU LOCAL_RANK; together they cover every part once."""
    seen = {}
    for node in (0, 1):
        for local in (0, 1):
            env = {"RANK": str(2 * node + local), "LOCAL_RANK": str(local), "WORLD_SIZE": "4",
                   "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": str(node)}
            seen[node, local] = vinputs.placement(None, env, torch.device(device), 2)
    assert seen[1, 1] == ((4, 4), torch.device("cuda", 1) if device == "cuda" else torch.device("cpu"), True)
    assert seen[1, 0][0] == (3, 4) and seen[0, 1][0] == (2, 4) and seen[0, 0][0] == (1, 4)
    assert sorted(k for (k, _), _, _ in seen.values()) == [1, 2, 3, 4]
    if device == "cuda":
        assert [seen[n, i][1] for n in (0, 1) for i in (0, 1)] == [torch.device("cuda", i) for i in (0, 1, 0, 1)]
    assert vinputs.placement("2/3", {}, torch.device(device), 2) == ((2, 3), torch.device(device), False)
    with pytest.raises(options.ConfigError, match="LOCAL_RANK 2, but this machine has 2 GPU"):
        vinputs.placement(None, {"RANK": "2", "LOCAL_RANK": "2", "WORLD_SIZE": "3"}, torch.device("cuda"), 2)


# ----------------------------------------------------------------------------- the GPU flow path on the CPU
def shifted_texture(shift, h=48, w=64, pad=8, seed=0):
    """Two uint8 frames of a smooth random texture whose content moves `shift` pixels to the
    right (+x) from the first to the second."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.random((h + 2 * pad, w + 2 * pad)).astype(np.float32), (0, 0), 2.0)
    t = ((t - t.min()) / (t.max() - t.min()) * 255).round().astype(np.uint8)
    return t[pad:pad + h, pad:pad + w], t[pad:pad + h, pad - shift:pad - shift + w]


def test_torch_flow_runs_on_the_cpu_and_gives_field_t_from_frame_t_to_t_plus_1():
    """TorchFlow (the GPU path) on the CPU: frames f0, f1, f0 with the content moving +2 px in
    x from f0 to f1 give fields +2 then -2 (field t goes from frame t to t + 1), y about 0."""
    f0, f1 = shifted_texture(2)
    flow = vflow.TorchFlow(torch.device("cpu"), flow_batch=2)
    first = flow.submit(np.stack([f0, f1, f0]))
    second = flow.submit(np.stack([f1, f0]))
    fields = first.get()
    assert fields.shape == (2, 2, 48, 64) and second.get().shape == (1, 2, 48, 64)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    for field, dx in ((fields[0], 2.0), (fields[1], -2.0), (second.get()[0], -2.0)):
        assert float(field[0][inner[1:]].median()) == pytest.approx(dx, abs=0.1)
        assert abs(float(field[1][inner[1:]].median())) < 0.1
