"""Speed of each stage of feature extraction on this machine, the flow orders compared, and
the time a 3-minute video takes with the defaults.

    python scripts/bench_extract.py [--device cpu|cuda] [--cores N] [--batch N] [--snippets N] [--no_end_to_end]

Writes a synthetic 1280 x 720 clip (a textured background panning, a textured block moving
across it) and measures, printing the 1-minute load average beside every figure (other
processes on the machine slow every figure down):
- decoding with resampling to 25 fps; resize + centre crop + colour conversions, for flow
  on the crop (the default) and on the resized frame (--flow_before_crop);
- the flow orders: OpenCV TV-L1 on the 224 x 224 crop against TV-L1 on the resized
  256 x 455 frame cropped afterwards (DeepMind's order): end-point error of the first
  inside the crop, taking the second as the reference (mean, within 4 px of the crop's
  border and inside it, share of pixels over 1 px), and the cost of each (one thread);
- the flow backends as the extractor computes a snippet (pairs/s): on the CPU on one thread
  (each of the extractor's helpers and its main process uses one), tvl1.py batched on a GPU;
- each I3D stream on 16 x 224 x 224 snippets, load_i3d's fast network and the plain
  InceptionI3d, with the main process's planned threads (random weights: the speed does
  not depend on them);
- the estimate for a 3-minute video (4,500 frames at 25 fps) with each backend, flow on
  the crop (the default) and --flow_before_crop, and (unless --no_end_to_end) extract_video
  with each backend on a clip of --snippets snippets (default 12) against the estimate. The estimate is for a long video: a
  short clip adds, once, the networks' loading, their first (slower) call, the I3D batch
  after the last flow, and the last snippets' flow left to the workers alone.
"""
import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import video.extractor as vextractor  # noqa: E402
import video.flow as vflow  # noqa: E402
import video.frames as vframes  # noqa: E402
from video.i3d import InceptionI3d, load_i3d  # noqa: E402
from utils import retain_freed_memory  # noqa: E402

MINUTES_3 = 3 * 60 * vframes.FPS          # frames of a 3-minute video at 25 fps


def synthetic_video(path, seconds, fps=30, size=(1280, 720)):
    """A panning texture (3 px/frame) with a textured block moving (+9, +4) px/frame."""
    rng = np.random.default_rng(0)
    w, h = size
    n = int(seconds * fps)
    background = cv2.resize(rng.integers(0, 255, (h // 8, (w + 3 * n) // 8 + 1, 3), dtype=np.uint8),
                            (w + 3 * n + 8, h), interpolation=cv2.INTER_CUBIC)
    block = cv2.resize(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), (240, 240), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n):
        frame = background[:, 3 * i:3 * i + w].copy()
        x, y = (300 + 9 * i) % (w - 240), (200 + 4 * i) % (h - 240)
        frame[y:y + 240, x:x + 240] = block
        writer.write(frame)
    writer.release()


def timed(fn, repeats=1, warm_up=True):
    """(seconds per call, last result), after one warm-up call unless warm_up is False."""
    out = fn() if warm_up else None
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


class Table:
    def __init__(self):
        self.rows = []

    def add(self, stage, rate, per_frame=None):
        """A row; per_frame: seconds per 25 fps frame (None: not a pipeline stage)."""
        self.rows.append((stage, rate, "" if per_frame is None else f"{1 / per_frame:.2f}",
                          f"{os.getloadavg()[0]:.1f}"))
        print(f"  {stage}: {rate}  (load {self.rows[-1][3]})", file=sys.stderr)

    def print(self):
        print("| stage | rate | frames/s (25 fps) | load (1 min) |\n|---|---|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


def decoded_frames(clip, n):
    """The first n frames of the clip at 25 fps."""
    cap, fps, _ = vframes.open_video(clip)
    try:
        return [f for _, f in zip(range(n), vframes.resampled_frames(cap, fps))]
    finally:
        cap.release()


def prepare(frames, flow_before_crop):
    for frame in frames:
        vframes.prepare_frame(frame, flow_before_crop=flow_before_crop)


def flow_orders(frames, table, pairs=6):
    """End-point error of crop-first flow against resized-first flow inside the crop, and
    the cost of each with OpenCV on one thread. Returns (seconds per crop pair, per resized pair)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    resized = [cv2.cvtColor(vframes.resize_shorter(f, 256), cv2.COLOR_BGR2GRAY) for f in frames[:pairs + 1]]
    box = vframes.centre_box(*resized[0].shape, 224)
    crops = [r[box] for r in resized]
    errors, cost = [], {"crop": 0.0, "resized": 0.0}
    for t in range(pairs):
        start = time.perf_counter()
        first = tvl1.calc(crops[t], crops[t + 1], None)
        cost["crop"] += time.perf_counter() - start
        start = time.perf_counter()
        whole = tvl1.calc(resized[t], resized[t + 1], None)[box]
        cost["resized"] += time.perf_counter() - start
        errors.append(np.linalg.norm(first - whole, axis=2))
    cv2.setNumThreads(threads)
    e = np.stack(errors)
    inner = np.zeros(e.shape[1:], bool)
    inner[4:-4, 4:-4] = True
    h, w = resized[0].shape
    table.add(f"flow order: EPE of crop-first vs resized-first ({h}x{w}) inside the 224 crop, {pairs} pairs",
              f"mean {e.mean():.3f} px; border 4 px {e[:, ~inner].mean():.3f}, inside {e[:, inner].mean():.3f}; "
              f"{100 * (e > 1).mean():.2f} % > 1 px")
    crop_s, resized_s = cost["crop"] / pairs, cost["resized"] / pairs
    table.add("TV-L1 OpenCV, 1 thread, on the 224 x 224 crop", f"{1 / crop_s:.2f} pairs/s", crop_s)
    table.add(f"TV-L1 OpenCV, 1 thread, on the resized {h}x{w} frame (before crop)",
              f"{1 / resized_s:.2f} pairs/s ({resized_s / crop_s:.2f}x the time, {h * w / 224 ** 2:.2f}x the pixels)",
              resized_s)
    return crop_s, resized_s


def flow_backends(gray, device, table, gpu_pairs=64):
    """Seconds per 224 x 224 frame pair of each TV-L1 backend as the extractor computes a
    snippet: on the CPU on one thread (the extractor's helpers and main process each use one;
    OpenCV: opencv_fields, tvl1.py: torch_fields, CPU_FLOW_PAIRS pairs per call); on a GPU,
    tvl1.py batched gpu_pairs per call (TorchFlow). Returns {backend: seconds per pair}."""
    cost = {}
    torch_threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        for backend in ("opencv", "torch"):
            if vflow.flow_on_device(backend, device):
                flow = vflow.TorchFlow(device, gpu_pairs)
                frames = np.concatenate([gray] * (gpu_pairs // (len(gray) - 1) + 1))[:gpu_pairs + 1]
                seconds, _ = timed(lambda: flow.submit(frames).get())
                cost[backend] = seconds / gpu_pairs
                where = f"on {device}, {gpu_pairs} pairs per call"
            else:
                fields = vflow.FIELDS[backend]
                fields(gray[:3])                                   # warm-up
                seconds, _ = timed(lambda: fields(gray), warm_up=False)
                cost[backend] = seconds / (len(gray) - 1)
                where = "1 thread" + (f", {vflow.CPU_FLOW_PAIRS} pairs per call" if backend == "torch" else "")
            name = "OpenCV" if backend == "opencv" else "tvl1.py"
            table.add(f"TV-L1 {name} 224 x 224, {where}", f"{1 / cost[backend]:.2f} pairs/s", cost[backend])
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv_threads)
    return cost


def i3d_streams(device, threads, batch, table):
    """Seconds per frame of each stream, fast network: {stream: s}."""
    per_frame = {}
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for stream, channels in (("rgb", 3), ("flow", 2)):
                path = os.path.join(tmp, f"{stream}.pt")
                torch.save(InceptionI3d(in_channels=channels).state_dict(), path)
                x = torch.rand(batch, channels, 16, 224, 224, device=device) * 2 - 1
                for name, net in (("fast (load_i3d)", load_i3d(path, in_channels=channels, device=device)),
                                  ("plain InceptionI3d", load_i3d(path, in_channels=channels, device=device,
                                                                  fast=False))):
                    def run():
                        with torch.inference_mode():
                            net.features(x)
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                    seconds, _ = timed(run)
                    s = seconds / (batch * 16)
                    per_frame.setdefault(stream, s)
                    table.add(f"I3D {stream}, {name}, batch {batch} x 16 x 224 x 224, {device.type}, "
                              f"{threads} thread(s)", f"{batch / seconds:.2f} snippets/s", s)
    finally:
        torch.set_num_threads(saved)
    return per_frame


def estimate(main_s, flow_s, cores, sequential=False):
    """Seconds for MINUTES_3 frames. On the CPU the flow helpers and the main process (which
    also computes flow when the helpers are busy) share `cores` cores: flow_s core-seconds per
    pair, main_s per frame for the main process's own work on one thread; the total is spread
    over the cores unless that own work is longer. sequential: flow and the rest take turns
    (tvl1.py on a GPU)."""
    if sequential:
        return MINUTES_3 * (main_s + flow_s)
    return MINUTES_3 * max(main_s, (main_s + flow_s) / cores)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--cores", type=int, default=vflow.available_cores(), help="cores to plan threads for")
    p.add_argument("--batch", type=int, default=vextractor.SNIPPETS_PER_BATCH, help="snippets per I3D call")
    p.add_argument("--snippets", type=int, default=12, help="length of the end-to-end clip in snippets")
    p.add_argument("--no_end_to_end", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    retain_freed_memory()     # as the extractor and load_i3d do, before any measurement
    backend = vflow.resolve_backend("auto", device, args.cores)
    threads, workers = vflow.plan_threads(args.cores, backend, device)
    table = Table()
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, {args.cores} cores: {threads} torch thread(s), "
          f"{workers} TV-L1 worker(s), flow backend {backend}; load at start {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip.mp4")
        synthetic_video(clip, seconds=6)
        decode_s, n = timed(lambda: len(decoded_frames(clip, 10 ** 6)))
        table.add("decode 1280 x 720 (mp4v), resample to 25 fps", f"{n / decode_s:.0f} frames/s", decode_s / n)
        frames = decoded_frames(clip, 40)
        prep = {}
        for before in (False, True):
            seconds, _ = timed(lambda: prepare(frames, before))
            prep[before] = seconds / len(frames)
            table.add(f"resize 256 + crop 224 + RGB + gray of the {'resized frame' if before else 'crop'}",
                      f"{len(frames) / seconds:.0f} frames/s", prep[before])
        crop_s, resized_s = flow_orders(frames, table)
        gray = np.stack([cv2.cvtColor(vframes.resize_crop(f), cv2.COLOR_BGR2GRAY) for f in frames[:17]])
        cost = flow_backends(gray, device, table)
        i3d = i3d_streams(device, threads, args.batch, table)
    table.print()

    main_s = {before: decode_s / n + prep[before] + i3d["rgb"] + i3d["flow"] for before in (False, True)}
    print()
    for b, flow_s in cost.items():
        sequential = vflow.flow_on_device(b, device)
        for before, what in ((False, "defaults (flow on the crop)"),
                             (True, "--flow_before_crop (flow time x the OpenCV cost ratio)")):
            t = estimate(main_s[before], flow_s * (resized_s / crop_s if before else 1), args.cores, sequential)
            print(f"estimate, 3-minute video (4,500 frames at 25 fps), both streams, --flow_backend {b}, {what}: "
                  f"{t / 60:.1f} min ({MINUTES_3 / t:.2f} frames/s)")
    t_rgb = MINUTES_3 * (decode_s / n + prep[False] + i3d["rgb"])
    print(f"estimate, 3-minute video, --streams rgb: {t_rgb / 60:.1f} min; load now {os.getloadavg()[0]:.1f}")

    if not args.no_end_to_end:
        with tempfile.TemporaryDirectory() as tmp:
            short = os.path.join(tmp, "short.mp4")
            synthetic_video(short, seconds=(16 * args.snippets + 1) / 25)
            paths = {}
            for stream, channels in (("rgb", 3), ("flow", 2)):
                paths[stream] = os.path.join(tmp, f"{stream}.pt")
                torch.save(InceptionI3d(in_channels=channels).state_dict(), paths[stream])
            # both backends, side by side on the same clip
            for b, flow_s in cost.items():
                start = time.perf_counter()
                feats = vextractor.extract_video(short, paths["rgb"], paths["flow"], device=device, cores=args.cores,
                                         flow_backend=b)
                t = time.perf_counter() - start
                frames = 16 * len(feats["rgb"])
                guess = estimate(main_s[False], flow_s, args.cores, vflow.flow_on_device(b, device))
                guess *= frames / MINUTES_3
                print(f"end to end, extract_video --flow_backend {b} on {frames} frames ({len(feats['rgb'])} "
                      f"snippets): {t:.1f} s ({frames / t:.2f} frames/s, {MINUTES_3 / (frames / t) / 60:.1f} min "
                      f"for 4,500 frames at that rate; estimate {guess:.1f} s); load {os.getloadavg()[0]:.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
