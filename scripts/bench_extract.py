"""Speed of each stage of feature extraction on this machine, and the time a video takes.

    python scripts/bench_extract.py [--workers N] [--device cpu|cuda] [--no_end_to_end]

Writes a synthetic 720p clip (a textured pattern in motion), then measures: decoding with
resampling to 25 fps, resize and crop (frames/s); TV-L1 on 224 x 224 pairs, in one process
and in --workers processes (pairs/s); each I3D stream on 16 x 224 x 224 snippets (random
weights: the speed does not depend on them). It prints a table, the estimated minutes for
a 3-minute video (4,500 frames at 25 fps; the stages summed, since on few cores they take
turns), and, unless --no_end_to_end, extract_video on a 2-snippet clip against that
estimate. Other processes on the machine slow every figure down.
"""
import argparse
import multiprocessing
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import video_features as vf  # noqa: E402
from i3d import InceptionI3d  # noqa: E402


def synthetic_video(path, seconds, fps=30, size=(1280, 720)):
    rng = np.random.default_rng(0)
    w, h = size
    texture = cv2.resize(rng.integers(0, 255, (h // 8, w // 8 + 64, 3), dtype=np.uint8), (w + 512, h),
                         interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(int(seconds * fps)):
        writer.write(np.ascontiguousarray(texture[:, 3 * i % 512:3 * i % 512 + w]))
    writer.release()


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def _tvl1(frames):
    return vf.tvl1().calc(frames[0], frames[1], None)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--no_end_to_end", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip.mp4")
        synthetic_video(clip, seconds=6)
        # decoding + 25 fps + resize 256 + crop 224 + colour conversions
        t, n = timed(lambda: sum(len(rgb) for rgb, _ in vf.snippets(clip)))
        decode_fps = n / t
        rows.append(("decode 1280x720 -> 25 fps, resize, crop", f"{decode_fps:.0f} frames/s", decode_fps))
        gray = [g for _, g in vf.snippets(clip)][0]
        pairs = [(gray[i], gray[i + 1]) for i in range(8)]
        _tvl1(pairs[0])
        t, _ = timed(lambda: [_tvl1(q) for q in pairs[1:]])
        one = (len(pairs) - 1) / t
        rows.append(("TV-L1 224x224, 1 process", f"{one:.2f} pairs/s", one * 16 / 15))
        if args.workers > 1:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(args.workers) as pool:
                pool.map(_tvl1, pairs[:args.workers])                      # warm up
                work = pairs * max(1, (2 * args.workers + len(pairs) - 1) // len(pairs))
                t, _ = timed(pool.map, _tvl1, work, 1)
            many = len(work) / t
            rows.append((f"TV-L1 224x224, {args.workers} processes", f"{many:.2f} pairs/s", many * 16 / 15))
        else:
            many = one
        flow_fps = rows[-1][2]
        for stream, channels in (("rgb", 3), ("flow", 2)):
            net = InceptionI3d(in_channels=channels).to(device).eval()
            x = torch.rand(2, channels, 16, 224, 224, device=device) * 2 - 1
            with torch.inference_mode():
                net.features(x[:1])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                net.features(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter() - start
            fps = 2 * 16 / t
            rows.append((f"I3D {stream} 16x224x224, batch 2, {device.type} "
                         f"({torch.get_num_threads()} threads)", f"{2 / t:.2f} snippets/s", fps))
        rgb_fps, i3d_flow_fps = rows[-2][2], rows[-1][2]

        width = max(len(r[0]) for r in rows)
        print(f"{'stage':<{width}}  {'rate':>16}  {'frames/s at 25 fps':>18}")
        for name, rate, fps in rows:
            print(f"{name:<{width}}  {rate:>16}  {fps:>18.2f}")
        per_frame = 1 / decode_fps + 1 / flow_fps + 1 / rgb_fps + 1 / i3d_flow_fps
        print(f"\nestimate, 3-minute video (4,500 frames at 25 fps), rgb + TV-L1 flow: "
              f"{4500 * per_frame / 60:.0f} min ({1 / per_frame:.2f} frames/s); rgb only: "
              f"{4500 * (1 / decode_fps + 1 / rgb_fps) / 60:.1f} min")

        if not args.no_end_to_end:
            short = os.path.join(tmp, "short.mp4")
            synthetic_video(short, seconds=32 / 25 + 0.01)
            nets = {"rgb_weights": InceptionI3d(in_channels=3), "flow_weights": InceptionI3d(in_channels=2)}
            t, feats = timed(lambda: vf.extract_video(short, **nets, device=device, workers=args.workers))
            frames = 16 * len(feats["rgb"])
            print(f"end to end, extract_video on {frames} frames (2 snippets): {t:.1f} s "
                  f"({frames / t:.2f} frames/s; estimate {frames * per_frame:.1f} s)")


if __name__ == "__main__":
    main()
