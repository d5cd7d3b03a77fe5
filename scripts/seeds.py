"""Run one configuration (or the Table 2 ablation variants) over several seeds and
summarise the mAP as mean and standard deviation.

    python scripts/seeds.py --seeds 0 1 2 --name NAME -- <main.py options>
    python scripts/seeds.py --variants basnet baseline base_bg supp_only --seeds 0 1 2 \\
        --name demo_ablation -- --dataset synthetic
    python scripts/seeds.py --name NAME --collect          # only re-read finished runs

Everything after `--` goes to main.py unchanged; seeds.py adds --seed, --output_path and,
with --variants, --variant (so those may not appear after `--`). Runs go one after the
other, each in its own process:

    OUT/NAME/seed_S/                 one configuration (OUT: --outputs, default outputs)
    OUT/NAME/<variant>/seed_S/       with --variants
    OUT/NAME/logs/[<variant>_]seed_S.log   the console output of each run
    OUT/NAME/runs.csv                one row per run (mAP per tIoU, averages, wall time)
    OUT/NAME/summary.csv, summary.md mean and standard deviation over the seeds
                                     (sample standard deviation, ddof = 1), in percent

Existing run folders are never deleted. A finished run (results.json of its last step)
is reused, not rerun, and said so; --rerun runs it again after renaming the old folder
to seed_S.old-<time>. An unfinished run with a checkpoint is continued (main.py
--resume); one without a checkpoint is renamed aside and started again. A run whose
config.json differs from the options given stops everything (use another --name, or
--rerun). Ctrl-C stops the running main.py (it keeps its last checkpoint) and ends in one
line `interrupted`, exit status 130; the same command then continues from there.
"""
import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from model import VARIANTS  # noqa: E402
from options import ConfigError, differences, given_options, main_parser, resolve  # noqa: E402
from utils import UserError, run_entry_point  # noqa: E402

MAIN = os.path.join(ROOT, "main.py")
MARKER = "seeds_run.json"       # written into a run folder when main.py finished it
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)   # besides Ctrl-C: handed on to main.py
STOP_TIMEOUT_S = 60             # after Ctrl-C: how long main.py may take to stop before it is killed
# options that seeds.py sets itself
OWN_OPTIONS = ("--seed", "--output_path", "--resume", "--overwrite")


class SeedsError(UserError):
    """Options or an experiment folder that seeds.py cannot work with."""


# ----------------------------------------------------------------------------- arguments
def build_parser():
    p = argparse.ArgumentParser(
        usage="python scripts/seeds.py --name NAME [--seeds S ...] [--variants V ...] [--collect] "
              "[--rerun] [--keep_going] [--outputs DIR] -- [main.py options]",
        description=__doc__.split("\n\n")[0],
        epilog="Everything after '--' is passed to main.py (see python main.py --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", required=True, help="experiment name: runs go to OUT/NAME")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds to run (default 0 1 2; with --collect: every seed_* folder found)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                   help="run each of these model variants (Table 2 ablation) for every seed")
    p.add_argument("--outputs", default="outputs", help="folder holding the experiment folders")
    p.add_argument("--collect", action="store_true", help="run nothing: summarise the finished runs")
    p.add_argument("--rerun", action="store_true",
                   help="run finished seeds again (the old folder is renamed, never deleted)")
    p.add_argument("--keep_going", action="store_true", help="after a failed run, go on with the others")
    return p


def split_argv(argv):
    """(seeds.py arguments, main.py arguments): split at the first '--'."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def check_main_args(main_args, variants):
    own = OWN_OPTIONS + (("--variant",) if variants else ())
    for a in main_args:
        for opt in own:
            if a == opt or a.startswith(opt + "="):
                raise SeedsError(f"{opt} is set by seeds.py; remove it from the main.py options")


# ----------------------------------------------------------------------------- runs
class Run:
    def __init__(self, exp_dir, variant, seed):
        self.variant, self.seed = variant, seed
        self.path = os.path.join(exp_dir, variant, f"seed_{seed}") if variant else os.path.join(exp_dir, f"seed_{seed}")
        log_name = f"{variant}_seed_{seed}.log" if variant else f"seed_{seed}.log"
        self.log = os.path.join(exp_dir, "logs", log_name)
        self.label = f"{variant + ' ' if variant else ''}seed {seed}"

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self):
        return os.path.isdir(self.path) and bool(os.listdir(self.path))

    def marker(self):
        try:
            with open(self.file(MARKER)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def checkpoint_step(self):
        """(step of last.pt, num_iters of its config) or None without a readable checkpoint."""
        if not os.path.isfile(self.file("last.pt")):
            return None
        import torch
        try:
            state = torch.load(self.file("last.pt"), map_location="cpu", weights_only=True)
            return int(state["step"]), int(state["config"]["num_iters"])
        except Exception:
            return None

    def finished(self):
        """results.json of the last step: main.py exited normally under seeds.py, or the
        checkpoint reached num_iters (a run made by hand)."""
        if not os.path.isfile(self.file("results.json")):
            return False
        marker = self.marker()
        if marker is not None:
            return marker.get("returncode") == 0
        steps = self.checkpoint_step()
        return steps is not None and steps[0] >= steps[1]

    def saved_config(self):
        try:
            with open(self.file("config.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def move_aside(self, why):
        new = f"{self.path}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        os.rename(self.path, new)
        print(f"[{self.label}] {why}: moved the old folder to {new}")


def main_command(run, main_args, resume=False):
    cmd = [sys.executable, MAIN, *main_args, "--seed", str(run.seed), "--output_path", run.path]
    if run.variant:
        cmd += ["--variant", run.variant]
    if resume:
        cmd += ["--resume", run.path]
    return cmd


def expected_config(run, main_args):
    """The config main.py would save for this run (JSON form), or a SeedsError."""
    parser = main_parser()
    parser.prog = "seeds.py ... -- [main.py options]"
    try:
        cfg = resolve(given_options(parser, main_command(run, main_args)[2:]))
    except ConfigError as e:
        raise SeedsError(f"main.py options: {e}") from None
    return json.loads(json.dumps(vars(cfg)))


def launch(cmd, log_path, prefix):
    """Run a command; its output goes, line by line, to the console (prefixed) and to the
    log file. Returns the exit code.

    The command runs in its own session, so Ctrl-C in the terminal reaches seeds.py
    only; seeds.py then hands one SIGINT to the command (main.py stops with `interrupted`,
    its checkpoint kept, so the same seeds.py command continues it), relays what it
    prints last and raises KeyboardInterrupt. SIGTERM and SIGHUP (a closed terminal, a job
    killed) are handed on too, then end seeds.py as they would have."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")

        def relay(lines):
            for line in lines:
                sys.stdout.write(prefix + line)
                sys.stdout.flush()
                log.write(line)

        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1,
                                start_new_session=True)
        received = []

        def hand_on(signum, frame):
            received.append(signum)
            proc.send_signal(signum)

        previous = {sig: signal.signal(sig, hand_on) for sig in FORWARDED_SIGNALS}
        try:
            relay(proc.stdout)
            return proc.wait()
        except KeyboardInterrupt:
            on_ctrl_c = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback
            try:
                proc.send_signal(signal.SIGINT)
                try:
                    rest, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rest, _ = proc.communicate()
                relay(rest.splitlines(keepends=True))
            finally:
                signal.signal(signal.SIGINT, on_ctrl_c)
            raise
        finally:
            proc.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if received:                        # end as the signal would have ended seeds.py
                signal.raise_signal(received[0])


def execute(run, main_args, resume):
    """Run main.py, its output both on the console and in the run's log; returns the
    exit code and the wall time."""
    cmd = main_command(run, main_args, resume)
    os.makedirs(os.path.dirname(run.log), exist_ok=True)
    print(f"[{run.label}] {'continuing' if resume else 'running'}: {' '.join(cmd[1:])}", flush=True)
    started = time.time()
    try:
        rc = launch(cmd, run.log, f"[{run.label}] ")
    except KeyboardInterrupt:
        print(f"[{run.label}] stopped: the same command continues it (from its last checkpoint, if it wrote one)",
              flush=True)
        raise
    wall = time.time() - started
    if rc == 0 or os.path.isdir(run.path):
        os.makedirs(run.path, exist_ok=True)
        with open(run.file(MARKER), "w") as f:
            json.dump({"command": cmd, "returncode": rc, "wall_s": wall, "resumed": resume,
                       "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}, f, indent=2)
    return rc, wall


def run_all(runs, main_args, rerun, keep_going):
    failed = []
    for run in runs:
        wanted = expected_config(run, main_args)
        resume = False
        if run.exists():
            saved = run.saved_config()
            diff = differences(saved, wanted) if saved else []
            if run.finished() and not rerun and not diff:
                print(f"[{run.label}] reusing the finished run in {run.path} (--rerun runs it again)")
                continue
            if diff and not rerun:
                raise SeedsError(f"{run.path} was run with other options ({'; '.join(diff[:5])}); "
                                 "use another --name, or --rerun to run it again")
            if rerun or diff:
                run.move_aside("--rerun")
            elif run.checkpoint_step() is not None:
                resume = True
                print(f"[{run.label}] unfinished run in {run.path}: continuing it from its checkpoint")
            else:
                run.move_aside("unfinished and without a checkpoint")
        rc, wall = execute(run, main_args, resume)
        if rc != 0:
            print(f"[{run.label}] main.py failed (exit code {rc}); its output is in {run.log}", flush=True)
            failed.append(run)
            if not keep_going:
                break
        else:
            print(f"[{run.label}] done in {wall:.0f} s", flush=True)
    return failed


# ----------------------------------------------------------------------------- summary
def discover(exp_dir, variants, seeds):
    """The runs of an experiment folder: the given variants/seeds, or every seed_* found."""
    if variants is None:
        nested = sorted(d for d in os.listdir(exp_dir) if glob.glob(os.path.join(exp_dir, d, "seed_*")))
        direct = glob.glob(os.path.join(exp_dir, "seed_*"))
        variants = [None] if direct or not nested else [v for v in VARIANTS if v in nested] + \
            [v for v in nested if v not in VARIANTS and v != "logs"]
    runs = []
    for variant in variants:
        found = seeds
        if found is None:
            folder = os.path.join(exp_dir, variant) if variant else exp_dir
            found = sorted(int(os.path.basename(p)[5:]) for p in glob.glob(os.path.join(folder, "seed_*"))
                           if os.path.basename(p)[5:].isdigit())
        runs += [Run(exp_dir, variant, s) for s in found]
    return runs


def range_is_all(name, tious):
    try:
        lo, hi = (float(x) for x in name.split(":"))
    except ValueError:
        return False
    return abs(lo - min(tious)) < 1e-9 and abs(hi - max(tious)) < 1e-9


def run_row(run, name):
    with open(run.file("results.json")) as f:
        res = json.load(f)
    saved = run.saved_config() or {}
    marker = run.marker() or {}
    row = {"variant": run.variant or saved.get("variant") or name, "seed": run.seed}
    for t, m in zip(res["tiou"], res["mAP"]):
        row[f"mAP@{t:g}"] = 100 * m
    row["avg"] = 100 * res["average_mAP"]
    for key, value in res.get("averages", {}).items():
        if not range_is_all(key, res["tiou"]):
            row[f"avg {key}"] = 100 * value
    row["accuracy"] = 100 * res.get("accuracy", float("nan"))
    row["wall_s"] = marker.get("wall_s", float("nan"))
    return row, res["tiou"]


def summarise(rows):
    """(per-run DataFrame, summary DataFrame with <metric>_mean / _std / n_seeds per variant)."""
    import pandas as pd
    runs = pd.DataFrame(rows)
    metrics = [c for c in runs.columns if c not in ("variant", "seed")]
    order = list(dict.fromkeys(runs["variant"]))
    grouped = runs.groupby("variant", sort=False)[metrics]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    summary = pd.DataFrame(index=pd.Index(order, name="variant"))
    for m in metrics:
        summary[f"{m}_mean"] = mean[m]
        summary[f"{m}_std"] = std[m]
    summary["n_seeds"] = runs.groupby("variant", sort=False).size()
    return runs, summary, metrics


def markdown(summary, metrics, title):
    def cell(m, v):
        mean, std = summary.loc[v, f"{m}_mean"], summary.loc[v, f"{m}_std"]
        if m == "wall_s":
            return f"{mean:.0f}" if mean == mean else "n/a"
        return f"{mean:.2f} ± {std:.2f}" if std == std else f"{mean:.2f} ± n/a"
    headers = ["variant"] + [("wall (s/run)" if m == "wall_s" else m) for m in metrics] + ["seeds"]
    lines = [f"### {title}", "",
             "mAP and accuracy in %, mean ± sample standard deviation over the seeds; "
             "`avg`: mean over all the tIoU thresholds.", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for v in summary.index:
        lines.append("| " + " | ".join([str(v)] + [cell(m, v) for m in metrics]
                                       + [str(int(summary.loc[v, "n_seeds"]))]) + " |")
    return "\n".join(lines) + "\n"


def collect(exp_dir, name, runs):
    rows, skipped = [], []
    for run in runs:
        if run.finished():
            rows.append(run_row(run, name)[0])
        elif run.exists():
            skipped.append(run)
    for run in skipped:
        print(f"[{run.label}] {run.path} is not finished: left out of the summary")
    if not rows:
        raise SeedsError(f"no finished run in {exp_dir}")
    table, summary, metrics = summarise(rows)
    table.to_csv(os.path.join(exp_dir, "runs.csv"), index=False, float_format="%.4f")
    summary.to_csv(os.path.join(exp_dir, "summary.csv"), float_format="%.4f")
    text = markdown(summary, metrics, name)
    with open(os.path.join(exp_dir, "summary.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {os.path.join(exp_dir, 'summary.csv')}, summary.md and runs.csv")
    return summary


def main(argv=None):
    own, main_args = split_argv(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(own)
    exp_dir = os.path.join(args.outputs, args.name)
    if args.collect:
        if not os.path.isdir(exp_dir):
            raise SeedsError(f"no experiment folder {exp_dir}")
        return collect(exp_dir, args.name, discover(exp_dir, args.variants, args.seeds))
    if not main_args:
        raise SeedsError("give the main.py options after '--' (e.g. -- --dataset synthetic)")
    check_main_args(main_args, args.variants)
    seeds = args.seeds if args.seeds is not None else [0, 1, 2]
    runs = [Run(exp_dir, v, s) for v in (args.variants or [None]) for s in seeds]
    for run in runs:  # every option problem shows before the first run starts
        expected_config(run, main_args)
    started = time.time()
    failed = run_all(runs, main_args, args.rerun, args.keep_going)
    print(f"{len(runs)} run(s) in {time.time() - started:.0f} s")
    summary = collect(exp_dir, args.name, runs)
    if failed:
        print(f"error: {len(failed)} run(s) failed: " + ", ".join(r.label for r in failed), file=sys.stderr)
        raise SystemExit(1)
    return summary


if __name__ == "__main__":
    run_entry_point(main, sys.argv[1:])
