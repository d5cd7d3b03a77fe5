"""Evaluate a checkpoint: localize actions in the test videos, write them in the
ActivityNet results format and print the mAP table.

    python test.py --model_file outputs/RUN/last.pt [--dataset ... --data_path ...]

--model_file takes this project's checkpoints and the authors' released state_dicts
(.pkl), on CPU or GPU. The same `evaluate` runs periodically during training.
"""
import contextlib
import os
import sys

import numpy as np
import torch

from dataset import (SECONDS_PER_SEGMENT, DataError, FeatureStore, VideoSet, classes_of,
                     describe_missing_data, load_annotations, load_dataset, read_class_list, test_batches)
from eval import (background_f_measure, evaluate_detection, format_table, load_ground_truth,
                  segment_labels, video_accuracy, video_map)
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


def options_from_checkpoint(args, state):
    """Data and inference options not given on the command line (None) take the values of
    the run that wrote the checkpoint, when it was trained on the same --dataset (or none
    is given). A bare state_dict records no options."""
    from options import BASE_DEFAULTS
    saved = state.get("config") or {}
    if args.dataset is None:
        args.dataset = saved.get("dataset")
    if not saved or saved.get("dataset") != args.dataset:
        return args
    for key in tuple(BASE_DEFAULTS) + ("class_list",):
        if getattr(args, key) is None and saved.get(key) is not None:
            setattr(args, key, saved[key])
    return args


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


def load_weights(path, model, feature_dim):
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
        with autocast_for(cfg, device):  # the other branch only when its CAS is wanted
            pred = model(feats.to(device, non_blocking=True), branches=("base", "supp") if keep_cas else (branch,))
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


def activitynet_results(results):
    return {"version": ACTIVITYNET_VERSION, "results": results,
            "external_data": {"used": True, "details": "precomputed two-stream features"}}


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
    predictions = activitynet_results(inferred["results"])
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
        save_json(os.path.join(output_dir, "predictions.json"), predictions, indent=None)
        save_json(os.path.join(output_dir, "results.json"), results)
    return results


def background_detection(inferred, videos, gt, num_classes):
    """Table 5: segment-level background detection F-measure (background = positive).

    The paper does not spell out the decision rule; here a segment is background
    - base / suppression branch: when the background class has the largest CAS value,
    - filter: when its foreground weight is below 0.5.
    Decisions on the T sampled positions are mapped back to each video's real segments
    (segment j takes sample floor(j T / L)) and compared with the ground truth
    (a segment is foreground when its centre lies in an instance)."""
    decisions = {}
    if "cas_base" in inferred and inferred["cas_base"][0].shape[-1] == num_classes + 1:
        decisions["base branch"] = [c.argmax(axis=-1) == num_classes for c in inferred["cas_base"]]
    if "cas_supp" in inferred:
        decisions["suppression branch"] = [c.argmax(axis=-1) == num_classes for c in inferred["cas_supp"]]
        decisions["filter (W < 0.5)"] = [w[:, 0] < 0.5 for w in inferred["fore_weights"]]
    truth, picks = [], []
    for v, name in enumerate(videos.names):
        L = int(videos.lengths[v])
        T = len(inferred["fore_weights" if "fore_weights" in inferred else "cas_base"][v])
        truth.append(~segment_labels(gt.annotations.get(name, []), L))
        picks.append(np.minimum(T - 1, (np.arange(L) * T) // L))
    return {name: background_f_measure([d[p] for d, p in zip(masks, picks)], truth)
            for name, masks in decisions.items()}


def format_background(table):
    lines = ["Background detection (Table 5): precision / recall / F-measure"]
    lines += [f"  {name:<20} {m['precision']:.3f} / {m['recall']:.3f} / {m['f_measure']:.3f}"
              for name, m in table.items()]
    return "\n".join(lines)


THUMOS14_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
    "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
    "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking"]


def checkpoint_classes(state, cfg):
    """Class names for a checkpoint used without a dataset: saved in our checkpoints; for a
    bare state_dict from --class_list, the dataset's gt.json, or THUMOS14's 20 classes."""
    if state.get("classes"):
        return list(state["classes"])
    if cfg.class_list:
        return read_class_list(cfg.class_list)
    if os.path.exists(os.path.join(cfg.data_path, "gt.json")):
        return classes_of(load_annotations(cfg.data_path))
    outputs = checkpoint_shapes(state["model"])[1]
    if outputs in (20, 21):
        return THUMOS14_CLASSES
    raise SystemExit("error: the checkpoint does not name its classes; give --class_list")


def predict_files(state, cfg, device):
    """Localize actions in one video given by its feature file(s); prints the instances."""
    try:
        arrays = [np.load(f) for f in cfg.features]
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read features {cfg.features}: {e}") from None
    if len({a.shape[0] for a in arrays}) > 1 or any(a.ndim != 2 for a in arrays):
        raise SystemExit(f"error: {cfg.features} must be (segments, width) arrays of equal length, "
                         f"got shapes {[a.shape for a in arrays]}")
    feats = np.concatenate(arrays, axis=1).astype(np.float32)
    if not np.isfinite(feats).all():
        raise SystemExit(f"error: {cfg.features} hold NaN or Inf")
    classes = checkpoint_classes(state, cfg)
    model = model_for_checkpoint(state, cfg, classes, feats.shape[1], cfg.model_file).to(device)
    name = os.path.splitext(os.path.basename(cfg.features[0]))[0]
    videos = VideoSet([name], np.zeros((1, len(classes)), np.float32), FeatureStore.from_arrays([feats]), feats.shape[1])
    inferred = infer(model, videos, classes, cfg, device)
    instances = inferred["results"][name]
    print(f"{name}: {feats.shape[0]} segments ({feats.shape[0] * SECONDS_PER_SEGMENT:.1f} s), "
          f"video probabilities above {cfg.class_th}: "
          + ", ".join(f"{classes[c]} {inferred['scores'][0, c]:.3f}" for c in inferred["predicted"][0]))
    for inst in sorted(instances, key=lambda i: -i["score"]):
        print(f"  {inst['label']:<20} {inst['segment'][0]:8.2f} s - {inst['segment'][1]:8.2f} s   score {inst['score']:.4f}")
    os.makedirs(cfg.output_path, exist_ok=True)
    save_json(os.path.join(cfg.output_path, "predictions.json"), activitynet_results(inferred["results"]), indent=None)
    print(f"wrote {os.path.join(cfg.output_path, 'predictions.json')}")
    return instances


def main(argv=None):
    from options import ConfigError, build_parser, resolve
    args = build_parser().parse_args(argv)
    if not args.model_file:
        raise SystemExit("error: test.py needs --model_file CHECKPOINT")
    state = read_checkpoint(args.model_file)
    options_from_checkpoint(args, state)
    if args.output_path is None:  # next to the checkpoint
        args.output_path = os.path.join(os.path.dirname(os.path.abspath(args.model_file)), "test")
    try:
        cfg = resolve(args)
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
    device = pick_device(cfg.device)
    if cfg.features:
        return predict_files(state, cfg, device)
    if not os.path.exists(os.path.join(cfg.data_path, "gt.json")):
        raise SystemExit("error: " + describe_missing_data(cfg))
    try:
        classes, _, test_set = load_dataset(cfg, splits=("test",))
    except DataError as e:
        raise SystemExit(f"error: {e}")
    model = model_for_checkpoint(state, cfg, classes, test_set.feature_dim, cfg.model_file).to(device)
    test_set.store.move_if_fits(device)
    if os.path.exists(os.path.join(cfg.output_path, "results.json")) and not cfg.overwrite:
        raise SystemExit(f"error: {cfg.output_path} already holds results.json; "
                         "choose another --output_path or pass --overwrite")
    os.makedirs(cfg.output_path, exist_ok=True)
    inferred = infer(model, test_set, classes, cfg, device, keep_cas=True)
    results = evaluate(model, test_set, classes, cfg, device, inferred=inferred)
    results["background_detection"] = background_detection(inferred, test_set, ground_truth(cfg), len(classes))
    save_json(os.path.join(cfg.output_path, "predictions.json"), activitynet_results(inferred["results"]), indent=None)
    save_json(os.path.join(cfg.output_path, "results.json"), results)
    print(format_table(results))
    print(format_background(results["background_detection"]))
    print(f"video classification: accuracy {results['accuracy']:.4f}, mAP {results['classification_mAP']:.4f}")
    print(f"wrote {os.path.join(cfg.output_path, 'predictions.json')} and results.json")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
