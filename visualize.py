"""Draw what a trained BaS-Net sees in a few test videos.

    python visualize.py --model_file outputs/RUN/last.pt                      # first 3 test videos
    python visualize.py --model_file outputs/RUN/last.pt --videos video_test_0000004 video_test_0000006

For each chosen test video, one figure with a row per ground-truth class of the video
(the predicted classes when it has none) and, on a common time axis in seconds:
  - the base-branch CAS and the suppression-branch CAS of that class, each min-max
    normalised over time as the localization does (utils.minmax_norm; as in the release,
    a negative minimum is not subtracted, so negative stretches run below the axis);
  - the ground-truth instances (shaded) and the best detections of the class (bars on
    top: as many as the video has instances, best score first);
  - a last row with the foreground weights of the filter module, all instances shaded.
A variant without a branch (baseline, base_bg: no suppression branch or filter;
supp_only: no base branch) just lacks that curve. Sample i of the T sampled segments
lies at i * L / T * 16/25 seconds (L: the video's real number of segments), the time
axis of the localization.

Figures go to <checkpoint folder>/figures (or --output_path) as <video>.png, and into a
TensorBoard events file there (tag cas/<video>; `tensorboard --logdir` that folder).
Data options (--dataset, --data_path, --num_segments, ...) default to the ones the
checkpoint was trained with when the checkpoint records them and --dataset is not given
(or names the same dataset); otherwise they work as in main.py / test.py.
Needs matplotlib (pip install matplotlib).
"""
import os
import sys

import numpy as np

from dataset import SECONDS_PER_SEGMENT, DataError, VideoSet, load_dataset
from options import ConfigError, build_parser, resolve

NUM_DEFAULT_VIDEOS = 3
COLORS = {"base": "tab:blue", "supp": "tab:red", "weights": "tab:purple", "gt": "tab:green",
          "detection": "black"}


def require_matplotlib():
    """pyplot with the Agg backend, or a clear error when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("error: visualize.py draws with matplotlib, which is not installed: "
                         "pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def make_parser():
    p = build_parser()
    p.description = __doc__.split("\n\n")[0].strip()
    for action in p._actions:
        if action.dest == "output_path":
            action.help = "folder for the figures and the events file (default: <checkpoint folder>/figures)"
        elif action.dest == "dataset":
            action.help = "dataset preset (default: the checkpoint's, else thumos14)"
    p.add_argument("--videos", nargs="+", default=None, metavar="VIDEO",
                   help=f"test videos to draw (default: the first {NUM_DEFAULT_VIDEOS} of the test split)")
    return p


class _ChosenStore:
    """The features of a few videos of a FeatureStore (indices into the chosen list)."""

    def __init__(self, store, picks):
        self.store, self.picks = store, np.asarray(picks, dtype=np.int64)
        self.lengths = store.lengths[self.picks]
        self.in_memory = store.in_memory

    def gather(self, videos, indices):
        return self.store.gather(self.picks[np.asarray(videos)], indices)


def choose_videos(test_set, wanted):
    """A VideoSet of the chosen test videos (the first few when none is named)."""
    if not wanted:
        picks = list(range(min(NUM_DEFAULT_VIDEOS, len(test_set))))
    else:
        index = {v: i for i, v in enumerate(test_set.names)}
        unknown = [v for v in wanted if v not in index]
        if unknown:
            raise SystemExit(f"error: not in the test split: {', '.join(unknown)} "
                             f"(test videos are e.g. {', '.join(test_set.names[:3])})")
        picks = [index[v] for v in wanted]
    return VideoSet([test_set.names[i] for i in picks], test_set.labels[picks],
                    _ChosenStore(test_set.store, picks), test_set.feature_dim)


def normalised(cas, num_classes):
    """Min-max normalisation over time of the C action classes (background dropped)."""
    from utils import minmax_norm
    return minmax_norm(np.asarray(cas, dtype=np.float64)[:, :num_classes])


DETECTION_LANES = (1.04, 1.08, 1.12, 1.16)


def stack_segments(detections):
    """(detection, height) pairs: overlapping detections go to different lanes above the
    curves (first lane free at its start, best-scored first when all are taken)."""
    ends = [-np.inf] * len(DETECTION_LANES)
    placed = []
    for d in sorted(detections, key=lambda d: d["segment"][0]):
        free = [k for k, e in enumerate(ends) if e <= d["segment"][0]]
        k = free[0] if free else int(np.argmin(ends))
        ends[k] = max(ends[k], d["segment"][1])
        placed.append((d, DETECTION_LANES[k]))
    return placed


def legend_above(ax):
    """Legend on the right above the axes, beside the left-aligned title."""
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles, names, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(names),
              fontsize=7, frameon=False, borderaxespad=0.1)


def draw_video(plt, video, length, curves, probs, instances, detections, classes, cfg, title):
    """One figure: a row per class to show and a foreground-weight row when there is one.

    curves: {"base": (T, C) normalised or None, "supp": ..., "weights": (T,) or None}."""
    T = next(c.shape[0] for c in curves.values() if c is not None)
    t = np.arange(T) * length / T * SECONDS_PER_SEGMENT
    duration = length * SECONDS_PER_SEGMENT
    labels = sorted({lab for lab, _, _ in instances}, key=classes.index)
    if not labels:  # nothing annotated: show what the model predicts
        labels = [classes[c] for c in np.flatnonzero(probs >= cfg.class_th)] or [classes[int(np.argmax(probs))]]
    rows = len(labels) + (curves["weights"] is not None)
    fig, axes = plt.subplots(rows, 1, figsize=(14, 1.9 * rows + 0.9), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, label in zip(axes, labels):
        c = classes.index(label)
        gt = [(s, e) for lab, s, e in instances if lab == label]
        for i, (s, e) in enumerate(gt):
            ax.axvspan(s, e, color=COLORS["gt"], alpha=0.25, lw=0, label="ground truth" if i == 0 else None)
        if curves["base"] is not None:
            ax.plot(t, curves["base"][:, c], color=COLORS["base"], lw=1, label="base CAS (normalised)")
        if curves["supp"] is not None:
            ax.plot(t, curves["supp"][:, c], color=COLORS["supp"], lw=1, label="suppression CAS (normalised)")
        best = sorted((d for d in detections if d["label"] == label), key=lambda d: -d["score"])
        for i, (d, y) in enumerate(stack_segments(best[:max(1, len(gt))])):
            ax.plot(d["segment"], [y, y], color=COLORS["detection"], lw=2, solid_capstyle="butt",
                    label="best detections" if i == 0 else None)
        predicted = "predicted" if probs[c] >= cfg.class_th else "not predicted"
        ax.set_title(f"{label}: video probability {probs[c]:.3f} ({predicted}), {len(gt)} instance(s)",
                     fontsize=9, loc="left")
        ax.set_ylim(-0.1, DETECTION_LANES[-1] + 0.04)  # negative logits stay negative after the release's min-max
        ax.set_ylabel("activation")
        legend_above(ax)
    if curves["weights"] is not None:
        ax = axes[-1]
        for i, (_, s, e) in enumerate(instances):
            ax.axvspan(s, e, color=COLORS["gt"], alpha=0.25, lw=0, label="ground truth" if i == 0 else None)
        ax.plot(t, curves["weights"], color=COLORS["weights"], lw=1, label="foreground weight")
        ax.set_title("foreground weights (filter module)", fontsize=9, loc="left")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("weight")
        legend_above(ax)
    axes[-1].set_xlim(0, duration)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def main(argv=None):
    args = make_parser().parse_args(argv)
    if not args.model_file:
        raise SystemExit("error: visualize.py needs --model_file CHECKPOINT")
    plt = require_matplotlib()
    from test import ground_truth, infer, model_for_checkpoint, options_from_checkpoint, read_checkpoint
    from utils import pick_device
    state = read_checkpoint(args.model_file)
    options_from_checkpoint(args, state)
    if args.output_path is None:
        args.output_path = os.path.join(os.path.dirname(os.path.abspath(args.model_file)), "figures")
    try:
        cfg = resolve(args)
        classes, _, test_set = load_dataset(cfg, splits=("test",))
        gt = ground_truth(cfg)
    except (ConfigError, DataError) as e:
        raise SystemExit(f"error: {e}")
    device = pick_device(cfg.device)
    model = model_for_checkpoint(state, cfg, classes, test_set.feature_dim, cfg.model_file).to(device)
    chosen = choose_videos(test_set, args.videos)
    out = infer(model, chosen, classes, cfg, device, keep_cas=True)

    from tensorboardX import SummaryWriter
    os.makedirs(cfg.output_path, exist_ok=True)
    writer = SummaryWriter(cfg.output_path)
    step = int(state.get("step", 0) or 0)
    name = os.path.basename(os.path.dirname(os.path.abspath(cfg.model_file)))
    written = []
    C = len(classes)
    for j, video in enumerate(chosen.names):
        curves = {
            "base": normalised(out["cas_base"][j], C) if "cas_base" in out else None,
            "supp": normalised(out["cas_supp"][j], C) if "cas_supp" in out else None,
            "weights": np.asarray(out["fore_weights"][j])[:, 0] if "fore_weights" in out else None,
        }
        title = (f"{video}: {int(chosen.lengths[j])} segments ({chosen.lengths[j] * SECONDS_PER_SEGMENT:.0f} s), "
                 f"T = {cfg.num_segments}; {model.variant} from {name}, step {step}")
        fig = draw_video(plt, video, int(chosen.lengths[j]), curves, out["scores"][j],
                         gt.annotations.get(video, []), out["results"][video], classes, cfg, title)
        path = os.path.join(cfg.output_path, f"{video}.png")
        fig.savefig(path, dpi=110)
        writer.add_figure(f"cas/{video}", fig, global_step=step, close=True)
        plt.close(fig)
        written.append(path)
        print(f"wrote {path}")
    writer.close()
    print(f"TensorBoard: tensorboard --logdir {cfg.output_path}")
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
