"""Inference and evaluation of a model: localize actions in test videos, score them with
the evaluator of eval/, and the paper's Table 5 (background detection).

train.py evaluates periodically through `Evaluator`; test.py and visualize.py are
command lines over the same functions.
"""
import os

import numpy as np
import torch

from dataset import load_annotations, test_batches
from eval import (background_f_measure, drop_unscored, evaluate_detection, load_ground_truth, load_predictions,
                  segment_labels, video_accuracy, video_map)
from postprocess import Localization, localize_video
from utils import autocast_for, save_json

ACTIVITYNET_VERSION = "VERSION 1.3"


@torch.no_grad()
def infer(model, videos, classes, cfg, device, *, keep_cas=False):
    """Run the model over every video of a VideoSet (batched: all are sampled to T) and localize.

    Returns {"results": {video: [instances]}, "scores": (N, C) video probabilities of the
    localization branch (background excluded), "predicted": list of class index arrays}
    and, with keep_cas, per-video "cas_base"/"cas_supp"/"fore_weights" arrays (T, ...)."""
    model.eval()
    branch = model.localization_branch
    params = Localization.from_config(cfg)
    C = len(classes)
    out = {"results": {}, "scores": np.zeros((len(videos), C), dtype=np.float64), "predicted": []}
    kept = {}
    for vids, feats in test_batches(videos, cfg.num_segments, cfg.batch_size):
        with autocast_for(cfg.amp, device):  # the other branch only when its CAS is wanted
            pred = model(feats.to(device, non_blocking=True), branches=("base", "supp") if keep_cas else (branch,))
        pred = {k: v.float().cpu().numpy() for k, v in pred.items()}
        for j, v in enumerate(vids):
            probs = pred[f"score_{branch}"][j, :C]
            grid = videos.grids[v]
            instances, predicted = localize_video(pred[f"cas_{branch}"][j, :, :C], probs, classes,
                                                  num_real_segments=int(videos.lengths[v]), params=params,
                                                  seconds_per_segment=grid.step, start=grid.start)
            out["results"][videos.names[v]] = instances
            out["scores"][v] = probs
            out["predicted"].append(predicted)
            if keep_cas:
                for k, val in pred.items():
                    if not k.startswith("score"):
                        kept.setdefault(k, []).append(val[j])
    out.update(kept)
    return out


def activitynet_results(results):
    return {"version": ACTIVITYNET_VERSION, "results": results,
            "external_data": {"used": True, "details": "precomputed two-stream features"}}


class Evaluator:
    """Evaluation of models on one test VideoSet. The ground truth of cfg.test_subset is
    read and checked when the Evaluator is made (before any training), then kept.

    A test subset without any temporal annotation (your own videos, before annotating
    them) cannot be scored: then `gt` is None and a pass only writes its predictions.
    Videos of the subset without features (absent from the test split, e.g. a converted
    set's videos without usable features) stay in the scored ground truth: their instances
    count as misses, and every result says how many (num_videos_without_features,
    num_instances_without_features)."""

    def __init__(self, cfg, videos, classes):
        self.cfg, self.videos, self.classes = cfg, videos, classes
        database = load_annotations(cfg.data_path)
        annotated = any(e.get("annotations") for e in database.values()
                        if isinstance(e, dict) and e.get("subset") == cfg.test_subset)
        self.gt = (load_ground_truth(os.path.join(cfg.data_path, "gt.json"), subset=cfg.test_subset)
                   if annotated else None)
        have = set(videos.names)
        self.without_features = {v: len(self.gt.annotations[v]) for v in self.gt.videos
                                 if v not in have} if self.gt else {}

    def __call__(self, model, device, output_dir=None, inferred=None):
        """mAP table, video classification metrics and predictions of one test pass; writes
        predictions.json and results.json into output_dir when given. Without ground
        truth: {"num_videos", "num_predictions"} only ("mAP" absent), predictions written."""
        cfg, videos = self.cfg, self.videos
        inferred = inferred or infer(model, videos, self.classes, cfg, device)
        if self.gt is None:
            if output_dir:
                save_json(os.path.join(output_dir, "predictions.json"), activitynet_results(inferred["results"]),
                          indent=None)
            return {"num_videos": len(videos), "num_predictions": sum(map(len, inferred["results"].values()))}
        # detections of a class without ground truth in the test subset: written, not scored
        scored, unscored = drop_unscored(load_predictions({"results": inferred["results"]}), self.gt)
        results = evaluate_detection(self.gt, scored, tiou_thresholds=cfg.tiou)
        results["num_predictions_unscored"] = sum(unscored.values())
        results["accuracy"] = float(video_accuracy(inferred["scores"], videos.labels, cfg.class_th))
        results["classification_mAP"] = float(video_map(inferred["scores"], videos.labels))
        results["num_videos"] = len(videos)
        results["num_videos_without_features"] = len(self.without_features)
        results["num_instances_without_features"] = sum(self.without_features.values())
        if output_dir:
            save_json(os.path.join(output_dir, "predictions.json"), activitynet_results(inferred["results"]), indent=None)
            save_json(os.path.join(output_dir, "results.json"), results)
        return results

    def background_detection(self, inferred):
        """Table 5 of the paper for a pass made with keep_cas=True (None without ground truth)."""
        return background_detection(inferred, self.videos, self.gt, len(self.classes)) if self.gt else None


def background_detection(inferred, videos, gt, num_classes):
    """Table 5: segment-level background detection F-measure (background = positive).

    The paper does not spell out the decision rule; here a segment is background
    - base / suppression branch: when the background class has the largest CAS value,
    - filter: when its foreground weight is below 0.5.
    Decisions on the T sampled positions are mapped back to each video's real segments
    (segment j takes sample floor(j T / L)) and compared with the ground truth
    (a segment is foreground when its centre, on the video's time grid, lies in an instance)."""
    decisions = {}
    if "cas_base" in inferred and inferred["cas_base"][0].shape[-1] == num_classes + 1:
        decisions["base branch"] = [c.argmax(axis=-1) == num_classes for c in inferred["cas_base"]]
    if "cas_supp" in inferred:
        decisions["suppression branch"] = [c.argmax(axis=-1) == num_classes for c in inferred["cas_supp"]]
        decisions["filter (W < 0.5)"] = [w[:, 0] < 0.5 for w in inferred["fore_weights"]]
    truth, picks = [], []
    for v, name in enumerate(videos.names):
        L, grid = int(videos.lengths[v]), videos.grids[v]
        T = len(inferred["fore_weights" if "fore_weights" in inferred else "cas_base"][v])
        truth.append(~segment_labels(gt.annotations.get(name, []), L, grid.step, grid.start))
        picks.append(np.minimum(T - 1, (np.arange(L) * T) // L))
    return {name: background_f_measure([d[p] for d, p in zip(masks, picks)], truth)
            for name, masks in decisions.items()}


def format_background(table):
    lines = ["Background detection (Table 5): precision / recall / F-measure"]
    lines += [f"  {name:<20} {m['precision']:.3f} / {m['recall']:.3f} / {m['f_measure']:.3f}"
              for name, m in table.items()]
    return "\n".join(lines)
