"""Every command-line option, its default, the dataset presets and which value wins.

Precedence, highest first:
    1. the command line (only what was typed: parsers have no defaults of their own),
    2. the saved options of a run (`--resume`: its config; test.py / visualize.py: the
       checkpoint's data and inference options when it was trained on the same --dataset),
    3. the dataset preset (`--dataset`),
    4. DEFAULTS: the paper's THUMOS14 recipe (BaS-Net, AAAI 2020, and the authors' release).
A resumed run keeps its options: only RESUMABLE ones may differ on the command line.

Each entry point builds its parser from the groups below, so its --help lists only what
it takes: `main_parser()`, `test_parser()`, `visualize_parser()`, `extraction_parser()`,
`convert_parser()`. A new option is one `add(...)` line in its group plus, when it has a
default, one entry in DEFAULTS (training), TEST_ONLY or EXTRACTION. The converter's options
are the exception: they have no saved run or preset to layer over, so their `add(...)` line
carries the default itself (`_Given`, at the end of this file).
"""
import argparse
import os
import time

from dataset import SAMPLINGS, STREAMS  # noqa: F401 (STREAMS: also for video/ and the entry points)
from model import VARIANTS
from utils import UserError, check_folder_option

THUMOS_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ANET_TIOUS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
# The release's code (the paper's text says 0 to 0.5 in steps of 0.025): see README, Differences.
RELEASE_ACT_THRESH = (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225)

NUM_DEFAULT_VIDEOS = 3  # visualize.py without --videos draws the first ones of the test split

# The paper's THUMOS14 recipe: what a preset may change.
RECIPE = dict(
    data_path="dataset/THUMOS14", modal="all", num_segments=750, r=8, hidden_dim=2048,
    dropout=0.7, lr=1e-4, weight_decay=5e-4, batch_size=16, num_iters=1500, alpha=1e-4,
    class_th=0.25, act_thresh=RELEASE_ACT_THRESH, nms_thresh=0.7, scale=24, gamma_oic=0.2,
    lambda_oic=0.25, eval_every=100, train_subset="train", test_subset="test",
    tiou=THUMOS_TIOUS, sampling="release",
)
# How to run: never changes a result (except --deterministic's kernels, which only fix them).
RUNTIME = dict(device="auto", num_workers=0, no_progress=False, max_memory_gb=16.0, deterministic=False)
# Everything else; None means "decided later" (said in the option's help).
DEFAULTS = dict(
    RECIPE, **RUNTIME, dataset="thumos14", variant="basnet", class_list=None, output_path=None,
    skip_bad_videos=False, amp="none", save_every=None, seed=None, model_file=None, resume=None,
    overwrite=False,
)
# Options of a run that a resume may change (the rest must match the run's).
RESUMABLE = set(RUNTIME) | {"resume", "num_iters", "output_path"}
# What makes one run of an experiment differ from another without changing its recipe.
PER_RUN = set(RUNTIME) | {"output_path", "seed", "resume", "overwrite", "model_file"}
# The options a checkpoint passes on to test.py / visualize.py: data and inference.
INFERENCE_KEYS = tuple(RECIPE) + ("class_list",)

# I3D features of video files (extract_features.py, test.py --video). Not training options:
# neither DEFAULTS nor a training run's config.json holds them.
FLOW_BACKENDS = ("auto", "opencv", "torch")
# --flow_backend auto: tvl1.py on a GPU and on CPUs of up to this many cores, OpenCV's TV-L1 on
# larger CPUs. Beside tvl1.py's helper threads, I3D runs on the main process's one torch thread,
# which caps what a process can do; OpenCV's helper processes leave I3D a share of the cores.
# From the per-core rates of the two (docs/benchmarks.md, "Extraction"), tvl1.py is the faster
# on CPUs up to about this size.
AUTO_TVL1_MAX_CORES = 8
# A folder given to extract_features.py stands for its files with these extensions.
VIDEO_EXTENSIONS = (".3gp", ".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".ogv",
                    ".ts", ".webm", ".wmv")
# The weights and the flow implementation, shared by the two commands.
I3D = dict(rgb_weights=None, flow_weights=None, flow_backend="auto")
# extract_features.py's defaults (the recipe of the public features: 256 -> 224 crops).
EXTRACTION = dict(
    I3D, out=None, streams=",".join(STREAMS), flow_before_crop=False, flow_batch=64, snippets_per_batch=8,
    workers=None, resize=256, crop=224, split="test", shard=None, gt=None, overwrite=False, device="auto",
    no_progress=False,
)
# test.py's and visualize.py's own options, beside DEFAULTS.
TEST_ONLY = dict(I3D, features=None, video=None, videos=None)

PRESETS = {
    # Paper, Table 1 "BaS-Net (I3D)": two-stream I3D features, 2 x 1024 per segment.
    "thumos14": dict(),
    # Paper, Table 1 "BaS-Net (UNT)": UntrimmedNet features (2 x 1024), same recipe.
    "thumos14_unt": dict(data_path="dataset/THUMOS14_UNT"),
    # ActivityNet: train on "training", test on "validation", tIoU 0.5:0.05:0.95, and the
    # paper's T = 750 ("We fix the number of input segments T to 750", for every dataset).
    # --num_segments 50 is the alternative docs/differences.md discusses (videos of ~180 segments).
    # anet12: the W-TALC ActivityNet 1.2 set; anet13: ACM-Net's / A2CL-PT's / ActionFormer's
    # I3D sets, each converted by scripts/convert_features.py.
    "anet12": dict(data_path="dataset/ActivityNet1.2", train_subset="training", test_subset="validation",
                   tiou=ANET_TIOUS),
    "anet13": dict(data_path="dataset/ActivityNet1.3", train_subset="training", test_subset="validation",
                   tiou=ANET_TIOUS),
    # The generated demo dataset (synthetic.py): narrow features and a small network so
    # that the whole run takes a few minutes on two CPU cores.
    "synthetic": dict(data_path="dataset/SYNTHETIC", num_segments=320, hidden_dim=256,
                      lr=5e-4, num_iters=400, eval_every=100),
    # Your own data in the release's layout: any class list, any feature width.
    "custom": dict(data_path=None),
}


class ConfigError(UserError):
    """An option, or a combination of options, that cannot work."""


# ----------------------------------------------------------------------------- parsers
def _show(value):
    if value is None:
        return "required"
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in value)
    return str(value)


def _default_text(key):
    if key not in RECIPE:
        value = {**EXTRACTION, **TEST_ONLY, **DEFAULTS}.get(key)
        return "" if value in (None, False) else f" (default: {_show(value)})"
    others = [f"{name}: {_show(p[key])}" for name, p in PRESETS.items() if key in p]
    return f" (default: {_show(RECIPE[key])}" + (f"; with --dataset {', '.join(others)}" if others else "") + ")"


class _Group:
    """add() of an argparse group with the default taken from DEFAULTS into the help, and
    no default in the parser (so that a given option can be told from an absent one)."""

    def __init__(self, parser, title):
        self.group = parser.add_argument_group(title)

    def __call__(self, flag, help, **kw):
        key = flag.lstrip("-")
        self.group.add_argument(flag, default=argparse.SUPPRESS, help=help + _default_text(key), **kw)

    def alias(self, flag, dest, **kw):
        """An old spelling of option `dest`, still accepted, not listed in --help."""
        self.group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def _data(p):
    add = _Group(p, "data")
    add("--dataset", choices=sorted(PRESETS), help="dataset preset")
    add("--data_path", help="folder with gt.json, split_*.txt and features/")
    add("--modal", choices=[*STREAMS, "all"], help="feature streams used")
    add("--num_segments", type=int, help="T, segments sampled per video")
    add("--class_list", help="text file with one class name per line (default: DATA/classes.txt if "
                             "present, else the sorted labels of gt.json)")
    add("--test_subset", help="gt.json subset evaluated")
    add("--max_memory_gb", type=float,
        help="features up to this size are loaded into memory once; larger sets are memory-mapped")
    add("--skip_bad_videos", action="store_true",
        help="skip videos whose features hold NaN/Inf (listed in a warning) instead of stopping")


def _training(p):
    add = _Group(p, "model and training")
    add("--train_subset", help="gt.json subset used for training")
    add("--sampling", choices=SAMPLINGS,
        help="training segment sampling. release: the authors' random_perturb (bin i draws among "
             "floor(iL/T)..floor((i+1)L/T), both ends included; varies for short videos too); "
             "stratified: uniform among the integers inside each bin when L >= T (no repeats), "
             "floor((i+u)L/T) when L < T")
    add("--variant", choices=VARIANTS,
        help="Table 2 ablation: full model, plain MIL, base branch + background class, suppression only")
    add("--hidden_dim", type=int, help="width of the CAS convolutions")
    add("--dropout", type=float, help="dropout before the last CAS layer")
    add("--lr", type=float,
        help="Adam learning rate (not scaled with the number of processes: the global batch is fixed)")
    add("--weight_decay", type=float, help="Adam L2 weight decay (coupled)")
    add("--num_iters", type=int, help="training steps (with --resume: continue the run to this step)")
    add("--alpha", type=float, help="weight of L_norm, the L1 loss on foreground weights")
    add("--eval_every", type=int, help="evaluate on the test split every N steps (and at the end)")
    add("--save_every", type=int, help="write the resumable checkpoint every N steps (default: eval_every)")
    add("--seed", type=int, help="random seed (default: drawn and recorded in config.json)")
    add("--model_file", help="checkpoint whose weights start the run")
    add("--resume", help="run folder or checkpoint to continue")
    add("--overwrite", action="store_true", help="allow writing into an existing, non-empty run folder")
    add("--output_path",
        help="run folder for everything the run writes (default: outputs/<dataset>_<variant>_<time>)")


def _inference(p, training):
    add = _Group(p, "inference")
    add("--r", type=int, help="top-k ratio: k = T // r")
    add("--batch_size", type=int, help="global batch size: videos per step, split evenly over the processes "
        "under torchrun (each takes batch_size / N), so results do not depend on N" if training else
        "test videos per forward pass")
    add("--class_th", type=float, help="video probability needed to localize a class")
    add("--act_thresh", type=float, nargs="+", help="CAS thresholds for proposals")
    add("--nms_thresh", type=float, help="NMS removes a proposal whose tIoU with a better one is >= this")
    add("--scale", type=int, help="temporal up-sampling factor of the CAS")
    add("--gamma_oic", type=float, help="weight of the class probability in a proposal's score")
    add("--lambda_oic", type=float, help="outer band width relative to the proposal length")
    add("--tiou", type=float, nargs="+", help="tIoU thresholds of the mAP")


def _running(p, training=True):
    """training=False: only what extract_features.py takes (no DataLoader, no autocast)."""
    add = _Group(p, "running")
    add("--device", choices=["auto", "cpu", "cuda"], help="auto picks cuda when available")
    if training:
        add("--deterministic", action="store_true",
            help="deterministic GPU kernels (torch.use_deterministic_algorithms, cuBLAS workspace); slower")
        add("--amp", choices=["none", "bf16", "fp16"], help="autocast on GPU (not the paper's recipe)")
        add("--num_workers", type=int, help="DataLoader worker processes")
    add("--no_progress", action="store_true", help="no progress bar")


def _i3d(p, title):
    """The I3D weights and the TV-L1 implementation (extract_features.py; test.py --video)."""
    add = _Group(p, title)
    add("--rgb_weights", help="pytorch-i3d RGB weights (rgb_imagenet.pt), for the rgb stream")
    add("--flow_weights", help="pytorch-i3d flow weights (flow_imagenet.pt), for the flow stream")
    add("--flow_backend", choices=FLOW_BACKENDS,
        help="TV-L1 implementation: torch (video/tvl1.py: batched on a GPU, in helper threads on the CPU), "
             "opencv (OpenCV's, in helper processes on the CPU) or auto (torch on a GPU and on CPUs of up to "
             f"AUTO_TVL1_MAX_CORES = {AUTO_TVL1_MAX_CORES} cores, opencv on more); they agree within 0.03 px, "
             "so features of one set may come from both")


def _checkpoint_input(p, output_help):
    add = _Group(p, "checkpoint")
    add("--model_file", required=True, help="checkpoint to evaluate: ours (last.pt) or the authors' .pkl")
    add("--output_path", help=output_help)
    add("--overwrite", action="store_true", help="allow replacing earlier results in --output_path")


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are ConfigErrors: one line `error: ...`, exit status 2
    (utils.run_entry_point), like every other bad input."""

    def error(self, message):
        raise ConfigError(message)


def _parser(description):
    return Parser(description=description, argument_default=argparse.SUPPRESS)


def main_parser():
    p = _parser("Train BaS-Net. Defaults are the paper's THUMOS14 recipe; a --dataset preset "
                "changes some of them (said per option).")
    _data(p)
    _training(p)
    _inference(p, training=True)
    _running(p)
    return p


def test_parser():
    p = _parser("Evaluate a BaS-Net checkpoint on a test split, or localize actions in one video. "
                "Data and inference options default to the checkpoint's.")
    _checkpoint_input(p, "folder for predictions.json and results.json (default: <checkpoint folder>/test)")
    _data(p)
    _inference(p, training=False)
    _running(p)
    one = _Group(p, "one video: detections printed, written as predictions.json, and a figure <video>.png")
    one("--features", nargs="+", metavar="NPY",
        help="localize actions in one video given as RGB.npy FLOW.npy (or one concatenated .npy)")
    one("--video", nargs="+", metavar="FILE_OR_DIR",
        help="localize actions in video files (a folder: its files with a video extension, as extract_features.py "
             "takes them): I3D features are extracted first; one predictions.json for all, a figure per video. "
             "A video that cannot be read is named and skipped: exit status 0 when every video was used, 1 when "
             "some were skipped, 2 when none could be")
    _i3d(p, "--video: I3D features as extract_features.py computes them")
    return p


def extraction_parser():
    p = _parser("Two-stream I3D features of video files, in the release layout "
                "(OUT/features/<split>/{rgb,flow}/<video>.npy).")
    add = _Group(p, "videos and output")
    add("inputs", nargs="+", metavar="VIDEO_OR_DIR",
        help="video files, or folders standing for their files (not subfolders) with the extensions of "
             f"VIDEO_EXTENSIONS: {' '.join(VIDEO_EXTENSIONS)} (any case)")
    add("--out", required=True, help="dataset folder to write into, e.g. dataset/MINE")
    add("--split", help="feature folder features/<split>")
    add("--shard", help="K/N: extract part K (1..N) of N of the sorted video list (default 1/1)")
    add("--gt", metavar="CSV", help="video,subset,labels file: also write gt.json and split files")
    add("--overwrite", action="store_true",
        help="extract again the videos whose existing features were made from other weights, options or "
             "another version of the video file, replacing those files (by default they stop the run)")
    _i3d(p, "I3D")
    add = _Group(p, "recipe and speed")
    add("--streams", help="comma-separated subset of " + ",".join(STREAMS))
    add("--flow_before_crop", action="store_true",
        help="flow on the resized frames, then cropped (DeepMind's order; default: on the crops)")
    add("--resize", type=int, help="shorter side before cropping")
    add("--crop", type=int, help="centre crop size")
    add("--snippets_per_batch", type=int, help="16-frame snippets per I3D forward pass")
    add.alias("--batch_size", "snippets_per_batch", type=int)
    add("--flow_batch", type=int,
        help="frame pairs per video/tvl1.py call on a GPU (memory: about 9 MB per 224 x 224 pair)")
    add("--workers", type=int,
        help="TV-L1 helpers of one thread on the CPU (tvl1.py: threads, OpenCV: processes), at most the "
             "cores - 1 (default: the cores that decoding and I3D leave; 0: flow in this process)")
    _running(p, training=False)
    return p


def visualize_parser():
    p = _parser("Draw the CAS and foreground weights of a checkpoint on a few test videos.")
    _checkpoint_input(p, "folder for the figures and the events file (default: <checkpoint folder>/figures)")
    _data(p)
    _inference(p, training=False)
    _running(p)
    p.add_argument("--videos", nargs="+", metavar="VIDEO",
                   help=f"test videos to draw (default: the first {NUM_DEFAULT_VIDEOS} of the test split)")
    return p


# ----------------------------------------------------------------------------- resolution
def given_options(parser, argv=None):
    """The options typed on the command line, as a dict (absent ones are left out)."""
    return vars(parser.parse_args(argv))


def resolve(given, saved=None, saved_keys=None, resuming=False, defaults=DEFAULTS):
    """The config (an argparse.Namespace) of the command line `given` over the `saved`
    options of a run (all of them, or only `saved_keys`; keys `defaults` does not know, such as
    an older version's, are dropped) over the preset over `defaults`, checked. resuming:
    options outside RESUMABLE may not differ from the saved ones."""
    saved = {k: v for k, v in (saved or {}).items() if (saved_keys is None or k in saved_keys) and k in defaults}
    if resuming:
        changed = [k for k in given if k not in RESUMABLE and k in saved and _differs(given[k], saved[k])]
        if changed:
            k = changed[0]
            raise ConfigError(f"--{k} {_show(given[k])} differs from the resumed run's {_show(saved[k])}: "
                              f"a resumed run keeps its options (only {', '.join(sorted('--' + o for o in RESUMABLE))} may change)")
    dataset = given.get("dataset") or saved.get("dataset") or DEFAULTS["dataset"]
    values = {**defaults, **PRESETS[dataset], **saved, **given, "dataset": dataset}
    cfg = argparse.Namespace(**values)
    if cfg.data_path is None:
        raise ConfigError(f"--dataset {cfg.dataset} needs --data_path (the folder with gt.json)")
    if cfg.save_every is None:
        cfg.save_every = cfg.eval_every
    if cfg.output_path is None:
        cfg.output_path = os.path.join("outputs", f"{cfg.dataset}_{cfg.variant}_{time.strftime('%Y%m%d-%H%M%S')}")
    cfg.act_thresh = [float(t) for t in cfg.act_thresh]
    cfg.tiou = [float(t) for t in cfg.tiou]
    check(cfg)
    return cfg


def _differs(a, b):
    norm = (lambda v: [float(x) for x in v] if isinstance(v, (list, tuple)) else v)
    return norm(a) != norm(b)


def inference_options(given, saved):
    """test.py / visualize.py: a checkpoint's data and inference options fill what the
    command line leaves out, when it was trained on the same --dataset (or none is given)."""
    saved = saved or {}
    if given.get("dataset") not in (None, saved.get("dataset")):
        saved = {}
    cfg = resolve(given, saved, saved_keys=INFERENCE_KEYS + ("dataset",), defaults={**DEFAULTS, **TEST_ONLY})
    if cfg.video and cfg.features:
        raise ConfigError("--video and --features contradict each other: give one")
    return cfg


def extraction_options(argv=None):
    """extract_features.py's options (an argparse.Namespace): the command line over EXTRACTION."""
    return argparse.Namespace(**{**EXTRACTION, **given_options(extraction_parser(), argv)})


def differences(saved, wanted):
    """'key: a there, b now' for each recipe option two configs disagree on (PER_RUN ones
    and keys present in only one of them are not differences)."""
    keys = sorted((set(saved) & set(wanted)) - PER_RUN)
    return [f"{k}: {saved[k]!r} there, {wanted[k]!r} now" for k in keys if _differs(saved[k], wanted[k])]


def check(cfg):
    def need(ok, message):
        if not ok:
            raise ConfigError(message)
    need(cfg.num_segments >= 1, f"--num_segments must be >= 1, got {cfg.num_segments}")
    need(1 <= cfg.r <= cfg.num_segments,
         f"--r {cfg.r} must be between 1 and --num_segments {cfg.num_segments} (k = T // r must be >= 1)")
    need(0 < cfg.class_th < 1, f"--class_th must be in (0, 1), got {cfg.class_th}")
    need(0 <= cfg.nms_thresh <= 1, f"--nms_thresh must be in [0, 1], got {cfg.nms_thresh}")
    need(all(0 <= t < 1 for t in cfg.act_thresh), f"--act_thresh values must be in [0, 1), got {cfg.act_thresh}")
    need(all(0 < t <= 1 for t in cfg.tiou), f"--tiou values must be in (0, 1], got {cfg.tiou}")
    need(cfg.batch_size >= 1, f"--batch_size must be >= 1, got {cfg.batch_size}")
    need(cfg.num_iters >= 0, f"--num_iters must be >= 0, got {cfg.num_iters}")
    need(cfg.eval_every >= 1 and cfg.save_every >= 1, "--eval_every and --save_every must be >= 1")
    need(cfg.lr > 0, f"--lr must be > 0, got {cfg.lr}")
    need(0 <= cfg.dropout < 1, f"--dropout must be in [0, 1), got {cfg.dropout}")
    need(cfg.scale >= 1, f"--scale must be >= 1, got {cfg.scale}")
    need(cfg.num_workers >= 0, f"--num_workers must be >= 0, got {cfg.num_workers}")
    need(cfg.max_memory_gb >= 0, f"--max_memory_gb must be >= 0, got {cfg.max_memory_gb}")
    need(not (cfg.resume and cfg.overwrite), "--resume and --overwrite contradict each other")
    check_folder_option(cfg.output_path, "--output_path", ConfigError)


def parse_args(argv=None):
    """main.py's config from a command line (no saved run)."""
    return resolve(given_options(main_parser(), argv))


# ----------------------------------------------------------------------------- public-set converter
class _Given(_Group):
    """A group of scripts/convert_features.py: each option's default is given where the option
    is defined, set in the parser and shown in the help. The converter's options are not
    training options, so DEFAULTS (and a training run's config.json) never hold them."""

    def __call__(self, flag, help, default=None, **kw):
        if kw.get("action") == "store_true":
            default = False
        shown = "" if default in (None, False) or kw.get("required") else f" (default: {_show(default)})"
        self.group.add_argument(flag, default=default, help=help + shown, **kw)


def convert_parser(description, sources, shared):
    """scripts/convert_features.py: one sub-command per entry of `sources` (name -> module with
    HELP and add_arguments(add)), each taking its module's options and those `shared(add)` adds."""
    p = _parser(description)
    commands = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name, module in sources.items():
        q = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(_Given(q, f"{name} files"))
        shared(_Given(q, "conversion"))
    return p
