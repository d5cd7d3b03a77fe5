"""Figures of what a trained BaS-Net sees in a video (paper, Figures 1 and 3): per class,
the base- and suppression-branch CAS (min-max normalised over time as the localization
does: postprocess.minmax_norm; as in the release, a negative minimum is not subtracted,
so negative stretches run below the axis), the ground-truth instances and the best
detections, and a row with the filter's foreground weights. Sample i of the T sampled
segments lies at start + i * L / T * step seconds (L: the video's real number of
segments; step and start: the time grid of its features), the time axis of the
localization. Used by visualize.py (test videos) and test.py --video (one video).
"""
import numpy as np

from postprocess import minmax_norm

COLORS = {"base": "tab:blue", "supp": "tab:red", "weights": "tab:purple", "gt": "tab:green",
          "detection": "black"}


def pyplot():
    """matplotlib's pyplot with the Agg backend (no screen needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


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


def draw_video(plt, *, length, grid, curves, probs, instances, detections, classes, class_th, title):
    """One figure: a row per class to show and a foreground-weight row when there is one.

    length: the video's number of segments on `grid`; curves: {"base": (T, C) normalised or
    None, "supp": ..., "weights": (T,) or None}; probs: (C,) video probabilities;
    instances: the ground truth [(label, start, end)], or None for a video without any (one's
    own): the rows are then the predicted classes and their titles say nothing of a ground
    truth. Per row, the best detections are drawn, as many as the row's ground-truth instances
    (at least one); each row's title says how many of the class's detections that is."""
    T = next(c.shape[0] for c in curves.values() if c is not None)
    t = grid.start + np.arange(T) * length / T * grid.step
    duration = grid.start + length * grid.step
    annotated = instances is not None
    instances = instances or []
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
        drawn = best[:max(1, len(gt))]
        for i, (d, y) in enumerate(stack_segments(drawn)):
            ax.plot(d["segment"], [y, y], color=COLORS["detection"], lw=2, solid_capstyle="butt",
                    label="best detections" if i == 0 else None)
        predicted = "predicted" if probs[c] >= class_th else "not predicted"
        shown = f"best {len(drawn)} of {len(best)} detection(s) drawn" if best else "no detection"
        truth = f"{len(gt)} ground-truth instance(s), " if annotated else ""
        ax.set_title(f"{label}: video probability {probs[c]:.3f} ({predicted}); {truth}{shown}",
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
