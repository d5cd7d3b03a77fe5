"""Draw what a trained BaS-Net sees in a few test videos.

    python visualize.py --model_file outputs/RUN/last.pt                      # first 3 test videos
    python visualize.py --model_file outputs/RUN/last.pt --videos video_test_0000004 video_test_0000006

For each chosen test video, one figure with a row per ground-truth class of the video
(the predicted classes when it has none) and, on a common time axis in seconds:
  - the base-branch CAS and the suppression-branch CAS of that class, each min-max
    normalised over time as the localization does (postprocess.minmax_norm; as in the release,
    a negative minimum is not subtracted, so negative stretches run below the axis);
  - the ground-truth instances (shaded) and the best detections of the class (bars on
    top: as many as the video has instances, best score first);
  - a last row with the foreground weights of the filter module, all instances shaded.
A variant without a branch (baseline, base_bg: no suppression branch or filter;
supp_only: no base branch) just lacks that curve. Sample i of the T sampled segments
lies at start + i * L / T * step seconds (L: the video's real number of segments; step
and start: the time grid of its features, 16/25 s and 0 in the release's layout), the
time axis of the localization.

Figures go to <checkpoint folder>/figures (or --output_path) as <video>.png, and into a
TensorBoard events file there (tag cas/<video>; `tensorboard --logdir` that folder).
Data options (--dataset, --data_path, --num_segments, ...) default to the ones the
checkpoint was trained with when the checkpoint records them and --dataset is not given
(or names the same dataset); otherwise they work as in main.py / test.py.
"""
import os
import sys

import numpy as np

from checkpoint import model_for_checkpoint, read_checkpoint
from dataset import DataError, VideoSet, load_dataset
from evaluation import Evaluator, infer
from options import given_options, inference_options, visualize_parser
from postprocess import minmax_norm
from utils import pick_device, run_entry_point

NUM_DEFAULT_VIDEOS = 3
COLORS = {"base": "tab:blue", "supp": "tab:red", "weights": "tab:purple", "gt": "tab:green",
          "detection": "black"}


def pyplot():
    """matplotlib's pyplot with the Agg backend (no screen needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


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
            raise DataError(f"not in the test split: {', '.join(unknown)} "
                            f"(test videos are e.g. {', '.join(test_set.names[:3])})")
        picks = [index[v] for v in wanted]
    return VideoSet([test_set.names[i] for i in picks], test_set.labels[picks],
                    _ChosenStore(test_set.store, picks), test_set.feature_dim, [test_set.grids[i] for i in picks])


def normalised(cas, num_classes):
    """Min-max normalisation over time of the C action classes (background dropped)."""
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


def draw_video(plt, video, length, grid, curves, probs, instances, detections, classes, class_th, title):
    """One figure: a row per class to show and a foreground-weight row when there is one.

    curves: {"base": (T, C) normalised or None, "supp": ..., "weights": (T,) or None}."""
    T = next(c.shape[0] for c in curves.values() if c is not None)
    t = grid.start + np.arange(T) * length / T * grid.step
    duration = grid.start + length * grid.step
    labels = sorted({lab for lab, _, _ in instances}, key=classes.index)
    if not labels:  # nothing annotated: show what the model predicts
        labels = [classes[c] for c in np.flatnonzero(probs >= class_th)] or [classes[int(np.argmax(probs))]]
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
        predicted = "predicted" if probs[c] >= class_th else "not predicted"
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


def curves_of(inferred, j, num_classes):
    """The curves draw_video shows for the j-th video of an infer(..., keep_cas=True) pass."""
    return {
        "base": normalised(inferred["cas_base"][j], num_classes) if "cas_base" in inferred else None,
        "supp": normalised(inferred["cas_supp"][j], num_classes) if "cas_supp" in inferred else None,
        "weights": np.asarray(inferred["fore_weights"][j])[:, 0] if "fore_weights" in inferred else None,
    }


def main(argv=None):
    given = given_options(visualize_parser(), argv)
    state = read_checkpoint(given["model_file"])
    given.setdefault("output_path", os.path.join(os.path.dirname(os.path.abspath(given["model_file"])), "figures"))
    cfg = inference_options(given, state.get("config"))
    plt = pyplot()
    classes, _, test_set = load_dataset(cfg, splits=("test",))
    gt = Evaluator(cfg, test_set, classes).gt
    device = pick_device(cfg.device)
    model = model_for_checkpoint(state, cfg, classes, test_set.feature_dim, cfg.model_file).to(device)
    chosen = choose_videos(test_set, cfg.videos)
    out = infer(model, chosen, classes, cfg, device, keep_cas=True)

    from tensorboardX import SummaryWriter
    os.makedirs(cfg.output_path, exist_ok=True)
    writer = SummaryWriter(cfg.output_path)
    step = int(state.get("step", 0) or 0)
    name = os.path.basename(os.path.dirname(os.path.abspath(cfg.model_file)))
    written = []
    for j, video in enumerate(chosen.names):
        title = (f"{video}: {int(chosen.lengths[j])} segments ({chosen.seconds(j):.0f} s), "
                 f"T = {cfg.num_segments}; {model.variant} from {name}, step {step}")
        fig = draw_video(plt, video, int(chosen.lengths[j]), chosen.grids[j], curves_of(out, j, len(classes)),
                         out["scores"][j], gt.annotations.get(video, []), out["results"][video], classes,
                         cfg.class_th, title)
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
    run_entry_point(main, sys.argv[1:])
