"""Command-line options: one parser, one config object (an argparse.Namespace).

Every default reproduces the authors' recipe (BaS-Net, AAAI 2020, and their release).
A dataset preset (`--dataset`) may change some defaults; an option given on the command
line always wins. `python main.py --help` lists every option with its default.
"""
import argparse
import os
import time

THUMOS_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ANET_TIOUS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
RELEASE_ACT_THRESH = (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225)

# The defaults of the paper's THUMOS14 recipe. Presets below override some of them.
BASE_DEFAULTS = dict(
    data_path="dataset/THUMOS14", modal="all", num_segments=750, r=8, hidden_dim=2048,
    dropout=0.7, lr=1e-4, weight_decay=5e-4, batch_size=16, num_iters=1500, alpha=1e-4,
    class_th=0.25, act_thresh=RELEASE_ACT_THRESH, nms_thresh=0.7, scale=24, gamma_oic=0.2,
    lambda_oic=0.25, eval_every=100, train_subset="train", test_subset="test",
    tiou=THUMOS_TIOUS, sampling="release",
)

PRESETS = {
    # Paper, Table 1 "BaS-Net (I3D)": two-stream I3D features, 2 x 1024 per segment.
    "thumos14": dict(),
    # Paper, Table 1 "BaS-Net (UNT)": UntrimmedNet features (2 x 1024), same recipe.
    "thumos14_unt": dict(data_path="dataset/THUMOS14_UNT"),
    # ActivityNet: train on "training", test on "validation", tIoU 0.5:0.05:0.95.
    # Videos are shorter (about 2 min, ~180 segments) and instances long (they cover
    # about half of a video), so T = 50 keeps about one sample per 2 s of video; the
    # released THUMOS setting (750) would repeat each segment several times.
    "anet12": dict(data_path="dataset/ActivityNet1.2", num_segments=50,
                   train_subset="training", test_subset="validation", tiou=ANET_TIOUS),
    "anet13": dict(data_path="dataset/ActivityNet1.3", num_segments=50,
                   train_subset="training", test_subset="validation", tiou=ANET_TIOUS),
    # The generated demo dataset (synthetic.py): narrow features and a small network so
    # that the whole run takes a few minutes on two CPU cores.
    "synthetic": dict(data_path="dataset/SYNTHETIC", num_segments=320, hidden_dim=256,
                      lr=5e-4, num_iters=400, eval_every=100),
    # Your own data in the release's layout: any class list, any feature width.
    "custom": dict(data_path=None),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None (the preset options say theirs in their help)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _describe_default(key):
    text = f"default: {_show(BASE_DEFAULTS[key])}"
    others = [f"{name}: {_show(p[key])}" for name, p in PRESETS.items() if key in p]
    return f" ({text}" + (f"; with --dataset {', '.join(others)}" if others else "") + ")"


def _show(value):
    if value is None:
        return "required"
    return " ".join(f"{v:g}" for v in value) if isinstance(value, (list, tuple)) else str(value)


def build_parser():
    p = argparse.ArgumentParser(
        description="BaS-Net: weakly-supervised temporal action localization. Defaults are the "
                    "paper's THUMOS14 recipe; a --dataset preset changes some of them (said per option).",
        formatter_class=_HelpFormatter)
    add = p.add_argument
    # data
    add("--dataset", default=None, choices=sorted(PRESETS), help="dataset preset (default: thumos14)")
    add("--data_path", default=None, help="folder with gt.json, split_*.txt and features/")
    add("--output_path", default=None,
        help="run folder for everything the run writes (default: outputs/<dataset>_<variant>_<time>)")
    add("--modal", default=None, choices=["rgb", "flow", "all"], help="feature streams used")
    add("--num_segments", type=int, default=None, help="T, segments sampled per video")
    add("--class_list", default=None,
        help="text file with one class name per line (default: sorted labels of gt.json)")
    add("--train_subset", default=None, help="gt.json subset used for training")
    add("--test_subset", default=None, help="gt.json subset used for testing")
    add("--max_memory_gb", type=float, default=16.0,
        help="features up to this size are loaded into memory once; larger sets are memory-mapped")
    add("--sampling", default=None, choices=["release", "stratified"],
        help="training segment sampling. release: the authors' random_perturb (bin i draws among "
             "floor(iL/T)..floor((i+1)L/T), both ends included; varies for short videos too); "
             "stratified: uniform among the integers inside each bin when L >= T (no repeats), "
             "floor((i+u)L/T) when L < T")
    add("--skip_bad_videos", action="store_true",
        help="skip videos whose features hold NaN/Inf (listed in a warning) instead of stopping")
    # model
    add("--variant", default="basnet", choices=["basnet", "baseline", "base_bg", "supp_only"],
        help="Table 2 ablation: full model, plain MIL, base branch + background class, suppression only")
    add("--r", type=int, default=None, help="top-k ratio: k = T // r")
    add("--hidden_dim", type=int, default=None, help="width of the CAS convolutions")
    add("--dropout", type=float, default=None, help="dropout before the last CAS layer")
    # optimisation
    add("--lr", type=float, default=None,
        help="Adam learning rate (not scaled with the number of processes: the global batch is fixed)")
    add("--weight_decay", type=float, default=None, help="Adam L2 weight decay (coupled)")
    add("--batch_size", type=int, default=None,
        help="global batch size: videos per step, split evenly over the processes under torchrun "
             "(each takes batch_size / N), so results do not depend on N")
    add("--num_iters", type=int, default=None, help="training steps")
    add("--alpha", type=float, default=None, help="weight of L_norm, the L1 loss on foreground weights")
    # inference
    add("--class_th", type=float, default=None, help="video probability needed to localize a class")
    add("--act_thresh", type=float, nargs="+", default=None, help="CAS thresholds for proposals")
    add("--nms_thresh", type=float, default=None, help="tIoU above which NMS removes a proposal")
    add("--scale", type=int, default=None, help="temporal up-sampling factor of the CAS")
    add("--gamma_oic", type=float, default=None, help="weight of the class probability in a proposal's score")
    add("--lambda_oic", type=float, default=None, help="outer band width relative to the proposal length")
    add("--tiou", type=float, nargs="+", default=None, help="tIoU thresholds of the mAP")
    # running
    add("--eval_every", type=int, default=None, help="evaluate on the test split every N steps (and at the end)")
    add("--save_every", type=int, default=None, help="write the resumable checkpoint every N steps (default: eval_every)")
    add("--seed", type=int, default=None, help="random seed (default: drawn and recorded in config.json)")
    add("--deterministic", action="store_true",
        help="deterministic GPU kernels (torch.use_deterministic_algorithms, cuBLAS workspace); slower")
    add("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when available")
    add("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast on GPU (not the paper's recipe)")
    add("--num_workers", type=int, default=0, help="DataLoader worker processes")
    add("--model_file", default=None, help="checkpoint to evaluate (test.py) or to start from (main.py)")
    add("--features", nargs="+", default=None, metavar="NPY",
        help="test.py: localize actions in one video given as RGB.npy FLOW.npy (or one concatenated .npy)")
    add("--resume", default=None, help="run folder or checkpoint to continue")
    add("--overwrite", action="store_true", help="allow writing into an existing, non-empty run folder")
    add("--no_progress", action="store_true", help="no progress bar")
    return _annotate_preset_defaults(p)


class ConfigError(ValueError):
    """An option, or a combination of options, that cannot work."""


def resolve(args):
    """Fill preset and base defaults into the parsed options and check them."""
    if args.dataset is None:
        args.dataset = "thumos14"
    preset = PRESETS[args.dataset]
    for key, value in BASE_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, preset.get(key, value))
    if args.data_path is None:
        raise ConfigError(f"--dataset {args.dataset} needs --data_path (the folder with gt.json)")
    if args.save_every is None:
        args.save_every = args.eval_every
    if args.output_path is None:
        args.output_path = os.path.join(
            "outputs", f"{args.dataset}_{args.variant}_{time.strftime('%Y%m%d-%H%M%S')}")
    args.act_thresh = [float(t) for t in args.act_thresh]
    args.tiou = [float(t) for t in args.tiou]
    check(args)
    return args


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
    need(not (cfg.resume and cfg.overwrite), "--resume and --overwrite contradict each other")


def _annotate_preset_defaults(parser):
    for action in parser._actions:
        if action.dest in BASE_DEFAULTS and action.default is None:
            action.help += _describe_default(action.dest)
    return parser


def parse_args(argv=None):
    return resolve(build_parser().parse_args(argv))
