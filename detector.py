"""Detect actions in video files or in their features with a trained checkpoint: the
Python API behind `test.py --video / --features`.

    from detector import Detector
    det = Detector("RUN/last.pt", rgb_weights="rgb_imagenet.pt", flow_weights="flow_imagenet.pt", device="cpu")
    result = det.detect("video.mp4")
    for inst in result.instances:            # best first
        print(inst.label, inst.start, inst.end, inst.score)      # seconds
    result.class_scores                      # {label: video-level probability}
    det.detect_features(rgb, flow)           # the same from (L, 1024) arrays
    det.features("video.mp4")                # {"rgb": (L, 1024), "flow": (L, 1024)} float32

The checkpoint (ours or the authors' .pkl, checkpoint.py) and the I3D networks
(video.extractor.I3DExtractor) are loaded once, when the Detector is made; the streams are
those the checkpoint was trained on (its --modal; a bare state_dict: both, unless
modal="rgb" or "flow" is given). Keyword options are test.py's data and inference options
(class_th, num_segments, class_list, ...; options.py says which value wins) and override
the checkpoint's. Everything that can be checked before a video is read is checked then:
the checkpoint, the options, the weight files of the streams used, and that the
checkpoint's feature width is the width of those streams (1024 per I3D stream).

Detection is evaluation.infer and postprocess.localize_video on one video, exactly as
test.py's pass over a test split. Problems raise UserError subclasses naming the file:
checkpoint.CheckpointError, DetectorError, and from a video video.frames' VideoError.
Without weight files the Detector detects in features only. The extractor keeps flow
helper processes and sets torch's thread count for its life: `close()` (or a `with`
block) ends both.
"""
import tempfile
from dataclasses import dataclass, field

import numpy as np

from checkpoint import CheckpointError, checkpoint_classes, checkpoint_shapes, model_for_checkpoint, read_checkpoint
from dataset import I3D_WIDTH, STREAMS, FeatureStore, Grid, VideoSet
from evaluation import infer
from options import DEFAULTS, TEST_ONLY, inference_options
from utils import UserError, pick_device



class DetectorError(UserError):
    """Inputs that do not fit the Detector: missing weights, features of another width."""


@dataclass(frozen=True)
class Instance:
    """One detected action instance: its class, [start, end) in seconds and its score."""
    label: str
    start: float
    end: float
    score: float

    def as_dict(self):
        """The ActivityNet results form: {"label", "score", "segment": [start, end]}."""
        return {"label": self.label, "score": self.score, "segment": [self.start, self.end]}


@dataclass
class Detection:
    """What a Detector finds in one video.

    instances: Instances, best score first. class_scores: {label: video-level probability}
    of every class (the localization branch's, background excluded). predicted: the labels
    localized (probability >= class_th, or the top one). num_segments, seconds, grid: the
    video's feature vectors, the time they cover and their time grid. raw: evaluation.infer's output for
    this one video (CAS, foreground weights; figures.curves_of reads it)."""
    video: str
    instances: list
    class_scores: dict
    predicted: list
    num_segments: int
    seconds: float
    grid: Grid
    raw: dict = field(repr=False)

    def results(self):
        """The instances in the ActivityNet results form, in evaluation.infer's order (the
        form test.py writes into predictions.json)."""
        return self.raw["results"][self.video]


def inference_config(state, options):
    """test.py's options for a checkpoint: `options` (a dict as given on a command line)
    over the checkpoint's saved ones over the presets (options.inference_options). A
    library call writes nothing, so unless an output_path is given the resolution's check
    of the output folder is made on the temporary directory, not on ./outputs."""
    return inference_options({"output_path": tempfile.gettempdir(), **options}, state.get("config"))


class Detector:
    """A checkpoint and the I3D networks of its streams, loaded once (module docstring)."""

    def __init__(self, model_file, rgb_weights=None, flow_weights=None, device="auto", *,
                 flow_backend="auto", extractor_options=None, **options):
        """model_file: our checkpoint or the authors' .pkl. rgb_weights / flow_weights:
        pytorch-i3d rgb_imagenet.pt / flow_imagenet.pt (or InceptionI3d networks); both
        None: features only. device: "auto", "cpu" or "cuda" (networks and inference).
        flow_backend: the TV-L1 implementation (video.flow). extractor_options: further
        I3DExtractor arguments (batch_size, workers, resize, crop ...). options: test.py's
        data and inference options (modal, class_th, num_segments, class_list ...)."""
        unknown = sorted(set(options) - set(DEFAULTS) - set(TEST_ONLY))
        if unknown:
            raise DetectorError(f"unknown option(s) {', '.join(unknown)}; expected those of test.py "
                                "(see python test.py --help)")
        self.model_file = model_file
        self.state = read_checkpoint(model_file)
        self.cfg = inference_config(self.state, {**options, "device": device})
        self.device = pick_device(self.cfg.device)
        self.classes = checkpoint_classes(self.state, self.cfg.class_list, self.cfg.data_path)
        self.width = checkpoint_shapes(self.state["model"])[0]
        self.streams = STREAMS if self.cfg.modal == "all" else (self.cfg.modal,)
        self.model = model_for_checkpoint(self.state, self.cfg, self.classes, self.width, model_file).to(self.device)
        self.model.eval()
        self.extractor = None
        if rgb_weights is not None or flow_weights is not None:
            self._check_streams({"rgb": rgb_weights, "flow": flow_weights})
            from video.extractor import I3DExtractor     # here: features-only use needs no OpenCV
            self.extractor = I3DExtractor(rgb_weights, flow_weights, self.streams, self.device.type,
                                          flow_backend=flow_backend, **(extractor_options or {}))

    def _check_streams(self, weights):
        """The checkpoint's width against the streams it uses, and a weight file for each."""
        wanted = I3D_WIDTH * len(self.streams)
        if self.width != wanted:
            fits = ("one stream: give modal rgb or flow (test.py: --modal rgb or --modal flow)"
                    if self.width == I3D_WIDTH else
                    "both streams: give modal all (test.py: --modal all) and both weight files"
                    if self.width == 2 * I3D_WIDTH else "no I3D stream combination")
            raise CheckpointError(f"{self.model_file} expects features {self.width} wide, but the streams used "
                                  f"({' + '.join(self.streams)}, modal {self.cfg.modal}) give {wanted} "
                                  f"({I3D_WIDTH} per I3D stream); {self.width} fits {fits}")
        missing = [s for s in self.streams if weights[s] is None]
        if missing:
            raise DetectorError(f"the checkpoint uses the {' and '.join(self.streams)} stream(s): "
                                f"{' and '.join(f'{s}_weights' for s in missing)} missing (test.py: "
                                f"{' and '.join(f'--{s}_weights' for s in missing)}; the pytorch-i3d weight "
                                "files, see README, 'Your own videos')")

    # ----------------------------------------------------------------------------- API
    def features(self, path, progress=None):
        """{stream: (L, 1024) float32} of a video file, for the checkpoint's streams.
        progress(done, total) as video.extractor's (frames at 25 fps)."""
        if self.extractor is None:
            raise DetectorError("this Detector was made without I3D weight files: it detects in features only "
                                "(give rgb_weights / flow_weights to read videos)")
        return self.extractor.extract(path, progress)

    def detect(self, path, progress=None):
        """The Detection of a video file (its name: its video id, the file name without
        extension, as test.py --video and extract_features.py name it)."""
        from video.inputs import video_id
        feats = self.features(path, progress)
        return self.detect_features(*(feats[s] for s in self.streams), name=video_id(path))

    def detect_features(self, *arrays, name="video", grid=Grid()):
        """The Detection of one video given its features: the (L, D) arrays of its streams
        in the order rgb, flow (or one array of both side by side). grid: the time grid of
        the vectors (default: the release's, 16 frames at 25 fps)."""
        try:
            arrays = [np.asarray(a, dtype=np.float32) for a in arrays]
        except (TypeError, ValueError) as e:
            raise DetectorError(f"{name}: features must be numeric arrays ({e})") from None
        if not arrays or any(a.ndim != 2 or a.shape[0] == 0 for a in arrays) or len({len(a) for a in arrays}) > 1:
            raise DetectorError(f"{name}: features must be non-empty (segments, width) arrays of equal length, "
                                f"got shapes {[a.shape for a in arrays]}")
        feats = np.concatenate(arrays, axis=1)
        if feats.shape[1] != self.width:
            raise CheckpointError(f"{self.model_file} expects features {self.width} wide, but {name}'s are "
                                  f"{feats.shape[1]} ({' + '.join(str(a.shape[1]) for a in arrays)})")
        if not np.isfinite(feats).all():
            raise DetectorError(f"{name}: the features hold NaN or Inf")
        videos = VideoSet([name], np.zeros((1, len(self.classes)), np.float32), FeatureStore.from_arrays([feats]),
                          feats.shape[1], [grid])
        raw = infer(self.model, videos, self.classes, self.cfg, self.device, keep_cas=True)
        instances = sorted((Instance(i["label"], i["segment"][0], i["segment"][1], i["score"])
                            for i in raw["results"][name]), key=lambda i: -i.score)
        scores = raw["scores"][0]
        return Detection(video=name, instances=instances,
                         class_scores={c: float(s) for c, s in zip(self.classes, scores)},
                         predicted=[self.classes[c] for c in raw["predicted"][0]],
                         num_segments=feats.shape[0], seconds=videos.seconds(0), grid=grid, raw=raw)

    # ----------------------------------------------------------------------------- life
    def close(self):
        """End the extractor's flow helpers and restore torch's thread count."""
        if self.extractor is not None:
            self.extractor.close()
            self.extractor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
