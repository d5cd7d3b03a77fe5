"""Evaluate a checkpoint: localize actions in the test videos, write them in the
ActivityNet results format and print the mAP table.

    python test.py --model_file outputs/RUN/last.pt [--dataset ... --data_path ...]
    python test.py --model_file CKPT --features RGB.npy FLOW.npy     # one video's features
    python test.py --model_file CKPT --video FILE.mp4 --rgb_weights R.pt --flow_weights F.pt

--model_file takes this project's checkpoints and the authors' released state_dicts
(.pkl), on CPU or GPU. Data and inference options default to the checkpoint's
(options.py says which value wins). The work is done by evaluation.py.
"""
import os
import sys

import numpy as np

from checkpoint import checkpoint_classes, model_for_checkpoint, read_checkpoint
from dataset import DataError, FeatureStore, Grid, VideoSet, describe_missing_data, has_features, load_dataset
from eval import format_table
from evaluation import Evaluator, activitynet_results, format_background, infer
from figures import curves_of, draw_video, pyplot
from options import given_options, inference_options, test_parser
from utils import pick_device, run_entry_point, save_json


def read_feature_files(paths):
    """One video's (L, F) features from RGB.npy FLOW.npy (or one concatenated file)."""
    try:
        arrays = [np.load(f) for f in paths]
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read features {paths}: {e}") from None
    if len({a.shape[0] for a in arrays}) > 1 or any(a.ndim != 2 for a in arrays):
        raise DataError(f"{paths} must be (segments, width) arrays of equal length, "
                        f"got shapes {[a.shape for a in arrays]}")
    feats = np.concatenate(arrays, axis=1).astype(np.float32)
    if not np.isfinite(feats).all():
        raise DataError(f"{paths} hold NaN or Inf")
    return feats


def features_of_video(cfg, device):
    """(L, F) features of cfg.video in the streams of cfg.modal, extracted with I3D."""
    from video.extractor import extract_video
    streams = ("rgb", "flow") if cfg.modal == "all" else (cfg.modal,)
    weights = {"rgb": cfg.rgb_weights, "flow": cfg.flow_weights}
    missing = [f"--{s}_weights" for s in streams if not weights[s]]
    if missing:
        raise DataError(f"--video needs {' and '.join(missing)} (the pytorch-i3d weight files; see README, "
                        "'Your own videos')")
    from tqdm import tqdm
    with tqdm(desc=os.path.basename(cfg.video), unit="frame", disable=cfg.no_progress or not sys.stderr.isatty()) as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)
        feats = extract_video(cfg.video, cfg.rgb_weights, cfg.flow_weights, streams, device.type,
                              progress=progress, flow_backend=cfg.flow_backend)
    return np.concatenate([feats[s] for s in streams], axis=1)


def localize_one(state, cfg, device, name, feats, grid=Grid()):
    """Detections in one video given its (L, F) features: prints them, writes
    predictions.json and the figure <name>.png into cfg.output_path; returns
    (instances, inferred, classes)."""
    classes = checkpoint_classes(state, cfg.class_list, cfg.data_path)
    model = model_for_checkpoint(state, cfg, classes, feats.shape[1], cfg.model_file).to(device)
    videos = VideoSet([name], np.zeros((1, len(classes)), np.float32), FeatureStore.from_arrays([feats]),
                      feats.shape[1], [grid])
    inferred = infer(model, videos, classes, cfg, device, keep_cas=True)
    instances = inferred["results"][name]
    print(f"{name}: {feats.shape[0]} segments ({videos.seconds(0):.1f} s), "
          f"video probabilities above {cfg.class_th}: "
          + ", ".join(f"{classes[c]} {inferred['scores'][0, c]:.3f}" for c in inferred["predicted"][0]))
    for inst in sorted(instances, key=lambda i: -i["score"]):
        print(f"  {inst['label']:<20} {inst['segment'][0]:8.2f} s - {inst['segment'][1]:8.2f} s   score {inst['score']:.4f}")
    os.makedirs(cfg.output_path, exist_ok=True)
    path = os.path.join(cfg.output_path, "predictions.json")
    save_json(path, activitynet_results(inferred["results"]), indent=None)
    plt = pyplot()
    fig = draw_video(plt, name, feats.shape[0], grid, curves_of(inferred, 0, len(classes)), inferred["scores"][0],
                     [], instances, classes, cfg.class_th, f"{name}: {model.variant} from {cfg.model_file}")
    figure = os.path.join(cfg.output_path, f"{name}.png")
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    print(f"wrote {path} and {figure}")
    return instances, inferred, classes


def evaluate_split(state, cfg, device):
    """The test pass over cfg's test split: predictions.json, results.json, the tables."""
    if not has_features(cfg.data_path):
        raise DataError(describe_missing_data(cfg.data_path))
    classes, _, test_set = load_dataset(cfg, splits=("test",))
    evaluator = Evaluator(cfg, test_set, classes)
    model = model_for_checkpoint(state, cfg, classes, test_set.feature_dim, cfg.model_file).to(device)
    test_set.store.move_if_fits(device)
    if os.path.exists(os.path.join(cfg.output_path, "results.json")) and not cfg.overwrite:
        raise DataError(f"{cfg.output_path} already holds results.json; "
                        "choose another --output_path or pass --overwrite")
    os.makedirs(cfg.output_path, exist_ok=True)
    inferred = infer(model, test_set, classes, cfg, device, keep_cas=True)
    results = evaluator(model, device, inferred=inferred)
    save_json(os.path.join(cfg.output_path, "predictions.json"), activitynet_results(inferred["results"]), indent=None)
    if "mAP" not in results:
        print(f"wrote {os.path.join(cfg.output_path, 'predictions.json')}: {results['num_predictions']} detections "
              f"(subset {cfg.test_subset!r} has no annotation, so no mAP)")
        return results
    results["background_detection"] = evaluator.background_detection(inferred)
    save_json(os.path.join(cfg.output_path, "results.json"), results)
    print(format_table(results))
    print(format_background(results["background_detection"]))
    print(f"video classification: accuracy {results['accuracy']:.4f}, mAP {results['classification_mAP']:.4f}")
    print(f"wrote {os.path.join(cfg.output_path, 'predictions.json')} and results.json")
    return results


def main(argv=None):
    given = given_options(test_parser(), argv)
    state = read_checkpoint(given["model_file"])
    given.setdefault("output_path", os.path.join(os.path.dirname(os.path.abspath(given["model_file"])), "test"))
    cfg = inference_options(given, state.get("config"))
    device = pick_device(cfg.device)
    if cfg.features or cfg.video:
        feats = read_feature_files(cfg.features) if cfg.features else features_of_video(cfg, device)
        name = os.path.splitext(os.path.basename(cfg.video or cfg.features[0]))[0]
        return localize_one(state, cfg, device, name, feats)[0]
    return evaluate_split(state, cfg, device)


if __name__ == "__main__":
    run_entry_point(main, sys.argv[1:])
