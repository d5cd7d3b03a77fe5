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
from figures import curves_of, draw_video, pyplot
from options import NUM_DEFAULT_VIDEOS, given_options, inference_options, visualize_parser
from utils import pick_device, run_entry_point


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
        fig = draw_video(plt, length=int(chosen.lengths[j]), grid=chosen.grids[j],
                         curves=curves_of(out, j, len(classes)), probs=out["scores"][j],
                         instances=gt.annotations.get(video, []) if gt else None,
                         detections=out["results"][video], classes=classes, class_th=cfg.class_th, title=title)
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
