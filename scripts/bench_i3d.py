"""I3D on the CPU (or a GPU): the plain network (pytorch-i3d's computation: SAME-padding copy,
convolution, BatchNorm, ReLU) against load_i3d's fast path (i3d.FastI3d), side by side in one
run on the same random weights. The two alternate, `--repeats` times each, after one warm-up
pass; the medians are reported with the machine's load (`os.getloadavg`) before and after, and
the largest difference of the features relative to their largest magnitude.

Two phases, in this order (the second cannot be undone within a process): first with the C
library's default allocator, as pytorch-i3d's own scripts run; then after
utils.retain_freed_memory(), which load_i3d calls on the CPU. "ratio" is relative to the
plain network of the first phase (pytorch-i3d as it runs), "same allocator" to the plain
network of the same phase (what the network changes alone give).

    python scripts/bench_i3d.py --threads 2 --batch 8            # RGB and flow, 16 x 224 x 224
    python scripts/bench_i3d.py --threads 2 --batch 8 --bf16     # also the bf16 autocast option
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from video.i3d import fast_i3d, random_i3d  # noqa: E402
from utils import retain_freed_memory  # noqa: E402


def relative_difference(got, want):
    """max |got - want| / max |want|."""
    return ((got.float() - want).abs().max() / want.abs().max()).item()


def timed(fn, x, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--batch", type=int, default=8, help="snippets per forward pass")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=224, help="frame height and width")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of each network")
    p.add_argument("--streams", default="rgb,flow")
    p.add_argument("--bf16", action="store_true", help="also time the bf16 autocast option")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"batch {args.batch} x {args.frames} x {args.size} x {args.size}, load average {load()}")
    print(f"{'stream':<6} {'allocator':<9} {'network':<10} {'frames/s':>9} {'ratio':>6} "
          f"{'same allocator':>15} {'max rel diff':>13}")
    setups = {}
    for stream in args.streams.split(","):
        channels = {"rgb": 3, "flow": 2}[stream]
        plain = random_i3d(channels, seed=channels).to(device)
        nets = {"plain": plain.features, "fast": fast_i3d(plain).features}
        if args.bf16:
            nets["fast bf16"] = fast_i3d(plain, bf16=True).features
        torch.manual_seed(0)
        x = torch.rand(args.batch, channels, args.frames, args.size, args.size, device=device) * 2 - 1
        setups[stream] = nets, x
    frames = args.batch * args.frames
    fps = {}
    for phase in ("default", "retained"):
        if phase == "retained" and not retain_freed_memory():
            print("(no second phase: the C library is not glibc)")
            break
        for stream, (nets, x) in setups.items():
            times, outs = {k: [] for k in nets}, {}
            with torch.inference_mode():
                for name, fn in nets.items():      # warm-up (oneDNN primitive creation)
                    outs[name] = fn(x)
                for _ in range(args.repeats):
                    for name, fn in nets.items():
                        t, _ = timed(fn, x, device)
                        times[name].append(t)
            fps.update({(stream, phase, name): frames / statistics.median(t) for name, t in times.items()})
            for name in nets:
                diff = relative_difference(outs[name], outs["plain"])
                rate = fps[stream, phase, name]
                print(f"{stream:<6} {phase:<9} {name:<10} {rate:>9.2f} "
                      f"{rate / fps[stream, 'default', 'plain']:>6.2f} "
                      f"{rate / fps[stream, phase, 'plain']:>15.2f} {diff:>13.2e}")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
