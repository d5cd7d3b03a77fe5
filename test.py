"""Evaluate a checkpoint: localize actions in the test videos, write them in the
ActivityNet results format and print the mAP table.

    python test.py --model_file outputs/RUN/last.pt [--dataset ... --data_path ...]
    python test.py --model_file CKPT --features RGB.npy FLOW.npy     # one video's features
    python test.py --model_file CKPT --video FILE_OR_DIR [...] --rgb_weights R.pt --flow_weights F.pt

--model_file takes this project's checkpoints and the authors' released state_dicts
(.pkl), on CPU or GPU. Data and inference options default to the checkpoint's
(options.py says which value wins). The test split's pass is evaluation.py's; detection in
video files or features is detector.py's (the Python API).

An existing predictions.json or results.json in --output_path is never replaced without
--overwrite. --video: exit status 0 when every video was used, 1 when some were skipped
(named; the others' detections are written), 2 when none could be used.
"""
import os
import sys
from dataclasses import dataclass, field

# --video: FFmpeg and OpenCV would print a warning for each unreadable file, which is
# reported by name and skipped (as extract_features.py does; set before OpenCV is imported)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import numpy as np  # noqa: E402

from checkpoint import model_for_checkpoint, read_checkpoint  # noqa: E402
from dataset import STREAMS, DataError, describe_missing_data, has_features, load_dataset  # noqa: E402
from eval import format_table  # noqa: E402
from evaluation import Evaluator, activitynet_results, format_background, infer  # noqa: E402
from figures import curves_of, draw_video, pyplot  # noqa: E402
from options import given_options, inference_options, test_parser  # noqa: E402
from utils import pick_device, run_entry_point, save_json  # noqa: E402


def read_feature_files(paths):
    """One video's feature arrays from RGB.npy FLOW.npy (or one concatenated file); their
    shapes and values are checked by Detector.detect_features."""
    try:
        return [np.load(f) for f in paths]
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read features {paths}: {e}") from None


def refuse_to_replace(output_path, overwrite, names):
    """Refuse (before any work) to replace earlier outputs of test.py without --overwrite."""
    there = [n for n in names if os.path.exists(os.path.join(output_path, n))]
    if there and not overwrite:
        raise DataError(f"{output_path} already holds {' and '.join(there)}; "
                        "choose another --output_path or pass --overwrite")


# ----------------------------------------------------------------------------- one video or many
@dataclass
class VideoRun:
    """test.py --video / --features: the Detection of each video used, the reason of each
    video skipped."""
    detections: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    @property
    def exit_status(self):
        return 1 if self.skipped else 0


def report(det, detection):
    """Print one video's detections and draw its figure into the output folder."""
    cfg, name = det.cfg, detection.video
    print(f"{name}: {detection.num_segments} segments ({detection.seconds:.1f} s), "
          f"video probabilities above {cfg.class_th}: "
          + ", ".join(f"{c} {detection.class_scores[c]:.3f}" for c in detection.predicted))
    for inst in detection.instances:
        print(f"  {inst.label:<20} {inst.start:8.2f} s - {inst.end:8.2f} s   score {inst.score:.4f}")
    plt = pyplot()
    fig = draw_video(plt, length=detection.num_segments, grid=detection.grid,
                     curves=curves_of(detection.raw, 0, len(det.classes)), probs=detection.raw["scores"][0],
                     instances=None,
                     detections=detection.results(), classes=det.classes, class_th=cfg.class_th,
                     title=f"{name}: {det.model.variant} from {det.model_file}")
    figure = os.path.join(cfg.output_path, f"{name}.png")
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    return figure


def video_progress(i, total, name, enabled):
    """A progress bar over one video's frames, titled with its place among the videos."""
    from tqdm import tqdm
    bar = tqdm(desc=f"[{i}/{total}] {name}", unit="frame", disable=not enabled, dynamic_ncols=True, leave=False)

    def progress(done, frames):
        if frames is not None and bar.total != frames:
            bar.total = frames
            bar.refresh()
        bar.update(done - bar.n)
    return bar, progress


def detect_videos(det, videos, cfg):
    """Detections in the video files {id: path}; a video that cannot be read is reported by
    name and skipped. Returns a VideoRun."""
    import cv2
    from video.frames import VideoError
    run = VideoRun()
    show = not cfg.no_progress and sys.stderr.isatty()
    for i, (name, path) in enumerate(videos.items(), start=1):
        if not show:
            print(f"[{i}/{len(videos)}] {path}", file=sys.stderr, flush=True)
        bar, progress = video_progress(i, len(videos), name, show)
        try:
            features = det.features(path, progress)
        except (VideoError, cv2.error) as e:
            run.skipped[name] = (str(e).strip().splitlines()[0] if isinstance(e, VideoError)
                                 else f"{path}: OpenCV error")
            print(f"skipped {name}: {run.skipped[name]}", file=sys.stderr)
            continue
        finally:
            bar.close()
        run.detections[name] = det.detect_features(*(features[s] for s in det.streams), name=name)
        report(det, run.detections[name])
    return run


def detect_files(given):
    """test.py --video / --features: detections, one predictions.json for all videos and a
    figure per video in --output_path. Every check that needs no video comes first: the
    files named, an earlier predictions.json, the checkpoint and options (the output folder
    writable), the checkpoint's width against its streams, the weight files."""
    from detector import Detector
    videos = None
    if given.get("video"):
        from video.inputs import list_videos           # the same files as extract_features.py takes
        videos = list_videos(given["video"])
    refuse_to_replace(given["output_path"], given.get("overwrite"), ["predictions.json"])
    weights = {s: given.get(f"{s}_weights") for s in STREAMS}
    if videos is not None and not any(weights.values()):
        raise DataError("--video needs the I3D weight files of the checkpoint's streams: --rgb_weights and/or "
                        "--flow_weights (pytorch-i3d's; see README, 'Your own videos')")
    options = {k: v for k, v in given.items() if k not in ("model_file", "rgb_weights", "flow_weights", "device",
                                                           "flow_backend")}
    if videos is None:
        weights = {}
    with Detector(given["model_file"], rgb_weights=weights.get("rgb"), flow_weights=weights.get("flow"),
                  device=given.get("device", "auto"), flow_backend=given.get("flow_backend", "auto"),
                  **options) as det:
        cfg = det.cfg
        unused = [s for s, w in weights.items() if w and s not in det.streams]
        if unused:
            print(f"note: the checkpoint uses the {' and '.join(det.streams)} stream only; "
                  f"--{unused[0]}_weights is not used", file=sys.stderr)
        os.makedirs(cfg.output_path, exist_ok=True)
        if videos is None:
            name = os.path.splitext(os.path.basename(cfg.features[0]))[0]
            run = VideoRun({name: det.detect_features(*read_feature_files(cfg.features), name=name)})
            report(det, run.detections[name])
        else:
            run = detect_videos(det, videos, cfg)
    if not run.detections:
        raise DataError(f"no video could be used ({len(run.skipped)}): "
                        + "; ".join(f"{v}: {r}" for v, r in run.skipped.items()))
    path = os.path.join(cfg.output_path, "predictions.json")
    save_json(path, activitynet_results({v: d.results() for v, d in run.detections.items()}), indent=None)
    print(f"wrote {path} and {len(run.detections)} figure(s) <video>.png in {cfg.output_path}")
    if run.skipped:
        print(f"detections in {len(run.detections)} of {len(run.detections) + len(run.skipped)} videos; "
              f"skipped {len(run.skipped)}: {', '.join(run.skipped)}", file=sys.stderr)
    return run


# ----------------------------------------------------------------------------- a test split
def score_split(state, cfg, device):
    """The test pass of a checkpoint over cfg's test split, nothing written: (results,
    inferred). results is the Evaluator's, with "background_detection" when scored."""
    if not has_features(cfg.data_path):
        raise DataError(describe_missing_data(cfg.data_path))
    classes, _, test_set = load_dataset(cfg, splits=("test",))
    evaluator = Evaluator(cfg, test_set, classes)
    model = model_for_checkpoint(state, cfg, classes, test_set.feature_dim, cfg.model_file).to(device)
    test_set.store.move_if_fits(device)
    inferred = infer(model, test_set, classes, cfg, device, keep_cas=True)
    results = evaluator(model, device, inferred=inferred)
    if "mAP" in results:
        results["background_detection"] = evaluator.background_detection(inferred)
    return results, inferred


def evaluate_split(state, cfg, device):
    """The test pass over cfg's test split: predictions.json, results.json, the tables."""
    refuse_to_replace(cfg.output_path, cfg.overwrite, ["predictions.json", "results.json"])
    results, inferred = score_split(state, cfg, device)
    os.makedirs(cfg.output_path, exist_ok=True)
    save_json(os.path.join(cfg.output_path, "predictions.json"), activitynet_results(inferred["results"]), indent=None)
    if "mAP" not in results:
        print(f"wrote {os.path.join(cfg.output_path, 'predictions.json')}: {results['num_predictions']} detections "
              f"(subset {cfg.test_subset!r} has no annotation, so no mAP)")
        return results
    save_json(os.path.join(cfg.output_path, "results.json"), results)
    print(format_table(results))
    print(format_background(results["background_detection"]))
    print(f"video classification: accuracy {results['accuracy']:.4f}, mAP {results['classification_mAP']:.4f}")
    print(f"wrote {os.path.join(cfg.output_path, 'predictions.json')} and results.json")
    return results


def main(argv=None):
    """The results of a test split's pass; with --video the VideoRun; with --features the
    video's instances as written into predictions.json."""
    given = given_options(test_parser(), argv)
    given.setdefault("output_path", os.path.join(os.path.dirname(os.path.abspath(given["model_file"])), "test"))
    if given.get("video"):
        return detect_files(given)
    if given.get("features"):
        return next(iter(detect_files(given).detections.values())).results()
    state = read_checkpoint(given["model_file"])
    cfg = inference_options(given, state.get("config"))
    return evaluate_split(state, cfg, pick_device(cfg.device))


def run(argv=None):
    """main() as a command: its exit status (see the module docstring)."""
    try:
        return getattr(run_entry_point(main, argv), "exit_status", 0)
    except SystemExit as e:           # run_entry_point's exit for bad input or Ctrl-C
        return e.code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
