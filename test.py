"""Evaluate a checkpoint: localize actions in the test videos, write them in the
ActivityNet results format and print the mAP table.

    python test.py --model_file outputs/RUN/last.pt [--dataset ... --data_path ...]

--model_file takes this project's checkpoints and the authors' released state_dicts
(.pkl), on CPU or GPU. The same `evaluate` runs periodically during training.
"""
import contextlib
import json
import os
import sys

import numpy as np
import torch

from dataset import DataError, load_dataset, test_batches
from eval import evaluate_detection, format_table, load_ground_truth, video_accuracy, video_map
from model import BaSNet, variant_parts
from utils import localize_video, pick_device, save_json

ACTIVITYNET_VERSION = "VERSION 1.3"


# ----------------------------------------------------------------------------- checkpoints
def read_checkpoint(path):
    """{"model": state_dict, ...} from one of our checkpoints or a bare state_dict."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, ...
        raise SystemExit(f"error: cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return state
    if isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values()):
        return {"model": state}
    raise SystemExit(f"error: {path} is neither a BaS-Net checkpoint nor a state_dict")


def checkpoint_shapes(weights):
    """(feature width, number of CAS outputs, hidden width, has filter) of a state_dict."""
    try:
        conv1, conv3 = weights["cas_module.conv_1.0.weight"], weights["cas_module.conv_3.0.weight"]
    except KeyError as e:
        raise SystemExit(f"error: the checkpoint lacks {e.args[0]}: not a BaS-Net state_dict") from None
    return conv1.shape[1], conv3.shape[0], conv1.shape[0], "filter_module.conv_1.0.weight" in weights


def model_for_checkpoint(state, cfg, classes, feature_dim, path):
    """A BaSNet shaped like the checkpoint, after checking it fits the dataset."""
    num_classes = len(classes)
    width, outputs, hidden, has_filter = checkpoint_shapes(state["model"])
    if width != feature_dim:
        raise SystemExit(f"error: {path} expects features {width} wide, but the dataset's are "
                         f"{feature_dim} (--modal {cfg.modal})")
    saved = state.get("config", {})
    variant = saved.get("variant") or ("basnet" if has_filter else
                                       "base_bg" if outputs == num_classes + 1 else "baseline")
    background = variant_parts(variant)[2]
    if outputs != num_classes + background:
        raise SystemExit(f"error: {path} was trained for {outputs - background} classes"
                         f"{' (+ background)' if background else ''}, but the dataset has {num_classes}")
    if state.get("classes") and list(state["classes"]) != list(classes):
        raise SystemExit(f"error: {path} was trained with the classes {state['classes']}, "
                         f"but the dataset's are {classes}")
    model = BaSNet(feature_dim, num_classes, cfg.num_segments, r=cfg.r, hidden_dim=hidden, variant=variant)
    model.load_state_dict(state["model"], strict=True)
    return model


def load_weights(path, model, classes, feature_dim):
    """The state_dict of a checkpoint, checked against an existing model (main.py --model_file)."""
    state = read_checkpoint(path)
    width, outputs, _, _ = checkpoint_shapes(state["model"])
    if width != feature_dim or outputs != model.cas_module.conv_3[0].out_channels:
        raise SystemExit(f"error: {path} holds a model for features {width} wide with {outputs} outputs; "
                         f"this run needs {feature_dim} and {model.cas_module.conv_3[0].out_channels}")
    return state["model"]


def autocast_for(cfg, device):
    if cfg.amp == "none" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)


# ----------------------------------------------------------------------------- inference
@torch.no_grad()
def infer(model, videos, classes, cfg, device, keep_cas=False):
    """Run the model over every test video (batched: all are sampled to T) and localize.

    Returns {"results": {video: [instances]}, "scores": (N, C) video probabilities of the
    localization branch (background excluded), "predicted": list of class index arrays}
    and, with keep_cas, per-video "cas_base"/"cas_supp"/"fore_weights" arrays (T, ...)."""
    model.eval()
    branch = model.localization_branch
    C = len(classes)
    out = {"results": {}, "scores": np.zeros((len(videos), C), dtype=np.float64), "predicted": []}
    kept = {}
    for vids, feats in test_batches(videos, cfg.num_segments, cfg.batch_size):
        with autocast_for(cfg, device):
            pred = model(feats.to(device, non_blocking=True))
        pred = {k: v.float().cpu().numpy() for k, v in pred.items()}
        for j, v in enumerate(vids):
            probs = pred[f"score_{branch}"][j, :C]
            instances, predicted = localize_video(pred[f"cas_{branch}"][j, :, :C], probs,
                                                  int(videos.lengths[v]), cfg, classes)
            out["results"][videos.names[v]] = instances
            out["scores"][v] = probs
            out["predicted"].append(predicted)
            if keep_cas:
                for k, val in pred.items():
                    if not k.startswith("score"):
                        kept.setdefault(k, []).append(val[j])
    out.update(kept)
    return out


_GT_CACHE = {}


def ground_truth(cfg):
    key = (os.path.abspath(cfg.data_path), cfg.test_subset)
    if key not in _GT_CACHE:
        _GT_CACHE[key] = load_ground_truth(os.path.join(cfg.data_path, "gt.json"), subset=cfg.test_subset)
    return _GT_CACHE[key]


def evaluate(model, videos, classes, cfg, device, output_dir=None, inferred=None):
    """mAP table, video classification metrics and predictions of one test pass; writes
    predictions.json and results.json into output_dir when given."""
    inferred = inferred or infer(model, videos, classes, cfg, device)
    predictions = {"version": ACTIVITYNET_VERSION, "results": inferred["results"],
                   "external_data": {"used": True, "details": "precomputed two-stream features"}}
    gt = ground_truth(cfg)
    # A class without ground truth in the test subset has no AP (the mAP runs over the
    # subset's classes), so its detections are left out of the scoring, not of the file.
    scored = {v: [i for i in inst if i["label"] in gt.class_index] for v, inst in inferred["results"].items()}
    results = evaluate_detection(gt, {"results": scored}, subset=cfg.test_subset, tiou_thresholds=cfg.tiou)
    results["num_predictions_unscored"] = sum(map(len, inferred["results"].values())) - sum(map(len, scored.values()))
    results["accuracy"] = float(video_accuracy(inferred["scores"], videos.labels, cfg.class_th))
    results["classification_mAP"] = float(video_map(inferred["scores"], videos.labels))
    results["num_videos"] = len(videos)
    if output_dir:
        save_json(os.path.join(output_dir, "predictions.json"), predictions)
        save_json(os.path.join(output_dir, "results.json"), results)
    return results


def main(argv=None):
    from options import ConfigError, build_parser, resolve
    args = build_parser().parse_args(argv)
    if not args.model_file:
        raise SystemExit("error: test.py needs --model_file CHECKPOINT")
    state = read_checkpoint(args.model_file)
    # options not given on the command line default to those of the run that wrote the checkpoint
    for key, value in state.get("config", {}).items():
        if getattr(args, key, "absent") is None and key not in ("output_path", "seed", "resume", "model_file"):
            setattr(args, key, value)
    if args.output_path is None:  # next to the checkpoint
        args.output_path = os.path.join(os.path.dirname(os.path.abspath(args.model_file)), "test")
    try:
        cfg = resolve(args)
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
    if not os.path.exists(os.path.join(cfg.data_path, "gt.json")):
        from dataset import describe_missing_data
        raise SystemExit("error: " + describe_missing_data(cfg))
    device = pick_device(cfg.device)
    try:
        classes, _, test_set = load_dataset(cfg, splits=("test",))
    except DataError as e:
        raise SystemExit(f"error: {e}")
    model = model_for_checkpoint(state, cfg, classes, test_set.feature_dim, cfg.model_file).to(device)
    if os.path.exists(os.path.join(cfg.output_path, "results.json")) and not cfg.overwrite:
        raise SystemExit(f"error: {cfg.output_path} already holds results.json; "
                         "choose another --output_path or pass --overwrite")
    os.makedirs(cfg.output_path, exist_ok=True)
    results = evaluate(model, test_set, classes, cfg, device, output_dir=cfg.output_path)
    print(format_table(results))
    print(f"video classification: accuracy {results['accuracy']:.4f}, mAP {results['classification_mAP']:.4f}")
    print(f"wrote {os.path.join(cfg.output_path, 'predictions.json')} and results.json")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
