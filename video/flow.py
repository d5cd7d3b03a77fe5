"""Optical flow of a video's snippets: the TV-L1 backends, their helper pools, and the thread plan.

- Flow: TV-L1 (OpenCV's DualTVL1OpticalFlow with its default parameters, or video/tvl1.py,
  the same algorithm in PyTorch) between consecutive grayscale frames through the whole
  video: field t is frame t -> t + 1, so snippet l gets the 16 fields of its frames 16 l ..
  16 l + 15, the last one pairing its frame 15 with the next snippet's frame 0 (or with the
  first frame of the dropped tail); only the video's very last field, which has no next
  frame, is the repeat of the one before it. Fields are clipped to [-20, 20] pixels and
  divided by 20, into [-1, 1]; channels (x, y) (flow_input). By default the flow is
  computed on the 224 x 224 crops; flow_before_crop computes it on the resized frames and
  then crops the fields as the RGB frames (DeepMind's order; 1.5 to 2.3 times the pixels).
  docs/own_videos.md gives the measured difference of the two orders.
- Backends: "torch" runs tvl1.tvl1_flow: on a GPU in this process (TorchFlow), flow_batch
  frame pairs per call; on the CPU (CPUFlow) in helper threads of one torch thread each
  and, while they are busy, in the main process, CPU_FLOW_PAIRS pairs per call. "opencv"
  runs OpenCV's TV-L1 on the CPU in helper processes of one thread and in the main process.
  "auto" is torch on a GPU and on a CPU of up to options.AUTO_TVL1_MAX_CORES cores, opencv
  on larger CPUs (resolve_backend; the reason is at that constant).
- Threads: the main process (decoding, I3D, in-process flow) and the TV-L1 helpers never
  use more threads than the cores this process may run on (plan_threads).
"""
import collections
import multiprocessing
import multiprocessing.pool
import os

import cv2
import numpy as np
import torch

from options import AUTO_TVL1_MAX_CORES, EXTRACTION, FLOW_BACKENDS
from utils import UserError
from video import tvl1
from video.frames import SNIPPET, centre_box

FLOW_BOUND = 20.0
FLOW_BATCH = EXTRACTION["flow_batch"]         # frame pairs per tvl1.py call on a GPU
# Frame pairs per tvl1.py call on the CPU (one thread): small batches stay in the CPU caches.
CPU_FLOW_PAIRS = 4
# Share of the cores the main process (decoding and I3D) gets beside OpenCV TV-L1 workers on
# the CPU: TV-L1 of a 224 x 224 pair costs several times both I3D streams of one frame
# (`scripts/benchmark.py --section extraction` measures both).
I3D_CORE_SHARE = 1 / 6


class FlowError(UserError):
    """Flow settings that cannot run here (backend, worker count)."""


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
    given to someone else (one call on several torch threads stalls when other processes
    share the cores; one-thread calls in parallel threads do not).
    submit(gray) -> a handle whose get() gives the (N - 1, 2, h, w) fields as a tensor."""

    def __init__(self, workers, snippets_per_batch, backend="opencv"):
        self.fields = FIELDS[backend]
        self.pool = None
        self.queue = 2 * workers                        # helper tasks in flight at most
        self.depth = 2 * self.queue + snippets_per_batch      # snippets in flight before waiting for one
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
