"""Train BaS-Net.

    python main.py --dataset synthetic                 # demo: generates data, trains, evaluates
    python main.py                                     # THUMOS14 with the paper's recipe
    python main.py --resume outputs/RUN                # continue a run from its last checkpoint
    python main.py --resume outputs/RUN --num_iters 3000   # ... and train it for longer
    torchrun --nproc_per_node 2 main.py ...            # several GPUs (or CPU processes)
"""
import os
import random
import sys
import time

import torch
import torch.distributed as dist

from checkpoint import check_start_weights, read_checkpoint, resume_checkpoint
from dataset import DataError, describe_missing_data, has_features, load_dataset
from eval import format_table
from options import ConfigError, given_options, main_parser, resolve
from train import train
from utils import pick_device, run_entry_point, set_seed


def setup_distributed(device_name):
    """(rank, world size, device) from torchrun's environment; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, pick_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), world_size, device


def broadcast(value, world_size):
    if world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# what a start refused before training wrote (older versions wrote config.json first)
REFUSED_START_FILES = {"config.json"}


def prepare_run_folder(cfg, resuming):
    """Refuse to write into another run's folder unless asked (--resume / --overwrite). A
    folder holding nothing but what a refused start wrote is no other run's: it is reused."""
    if resuming or not os.path.isdir(cfg.output_path) or set(os.listdir(cfg.output_path)) <= REFUSED_START_FILES:
        return
    if not cfg.overwrite:
        raise ConfigError(f"run folder {cfg.output_path} already exists and is not empty; "
                          "use --resume to continue it, --overwrite to write into it, or another --output_path")


def check_start(cfg, world_size):
    """What can be checked before the data is read: the batch split over the processes and
    the --model_file checkpoint against --hidden_dim and --variant (the data's feature
    width and classes are checked once it is read, still before the run folder exists).
    Returns the --model_file checkpoint (None without one), read once for train()."""
    if cfg.batch_size % world_size:
        raise ConfigError(f"--batch_size {cfg.batch_size} is not divisible by the {world_size} processes")
    if not cfg.model_file or cfg.resume:
        return None
    state = read_checkpoint(cfg.model_file)
    check_start_weights(state["model"], cfg.model_file, hidden_dim=cfg.hidden_dim, variant=cfg.variant,
                        saved=state.get("config"))
    return state


def ensure_dataset(cfg, is_main):
    """Generate the demo dataset on first use; stop with directions when data is missing."""
    if has_features(cfg.data_path):
        return
    if cfg.dataset != "synthetic":
        raise DataError(describe_missing_data(cfg.data_path))
    if is_main:
        from synthetic import generate_synthetic
        print(f"generating the demo dataset in {cfg.data_path} (seeded, once)")
        generate_synthetic(cfg.data_path, seed=0)


def configure_determinism(cfg):
    if cfg.deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; set before CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def configure(argv):
    """(cfg, (checkpoint path, state) to resume or None) of a command line."""
    given = given_options(main_parser(), argv)
    if "resume" not in given:
        return resolve(given), None
    ckpt_path, state = resume_checkpoint(given["resume"])
    given["output_path"] = os.path.dirname(os.path.abspath(ckpt_path))
    return resolve(given, saved={**state["config"], "overwrite": False}, resuming=True), (ckpt_path, state)


def main(argv=None):
    cfg, resume = configure(argv)
    configure_determinism(cfg)
    rank, world_size, device = setup_distributed(cfg.device)
    is_main = rank == 0
    resume_state = None
    if resume is not None:
        ckpt_path, resume_state = resume
        if len(resume_state["rng"]) != world_size:
            raise ConfigError(f"{ckpt_path} was written by {len(resume_state['rng'])} process(es); "
                              f"resume it with the same number, not {world_size}")
        if resume_state["step"] >= cfg.num_iters:
            if is_main:
                print(f"{ckpt_path} is at step {resume_state['step']} of {cfg.num_iters}: nothing to do "
                      "(--num_iters N continues it to step N)")
            return None
        if is_main:
            print(f"resuming {ckpt_path} at step {resume_state['step']} of {cfg.num_iters}")
    # every process checks (nothing is written before the barrier below), so all stop together
    prepare_run_folder(cfg, resuming=resume_state is not None)
    start_state = check_start(cfg, world_size)
    if cfg.seed is None:
        cfg.seed = broadcast(random.SystemRandom().randrange(2 ** 31), world_size)
    set_seed(cfg.seed + rank)  # each process its own dropout masks
    ensure_dataset(cfg, is_main)
    if world_size > 1:
        dist.barrier()
    started = time.time()
    data = load_dataset(cfg)
    if is_main:
        print(f"data: {len(data[1])} train / {len(data[2])} test videos from {cfg.data_path} "
              f"({time.time() - started:.1f} s, features {'in memory' if data[1].store.in_memory else 'memory-mapped'})")
    # train() creates the run folder, once everything it needs is checked
    _, results = train(cfg, data, device, rank, world_size, resume_state=resume_state, start_state=start_state)
    if is_main and results is not None:
        if "mAP" in results:
            print(format_table(results))
            print(f"video classification: accuracy {results['accuracy']:.4f}, mAP {results['classification_mAP']:.4f}")
        print(f"run folder: {cfg.output_path} ({time.time() - started:.0f} s)")
    return results


def run(argv=None):
    """main() with clear one-line errors and exit codes instead of tracebacks."""
    try:
        results = run_entry_point(main, argv)
        if dist.is_initialized():
            # no process tears its group down while another one still works: without this
            # barrier rank 1, done first, aborted at exit in about 1 of 30 torchrun runs
            dist.barrier()
        return results
    except FloatingPointError as e:
        print(f"error: {e}; the last good checkpoint is kept", file=sys.stderr)
        sys.exit(1)
    finally:
        # on every way out (an error too): a process that exits with a live gloo group after
        # a collective can abort at interpreter exit (SIGABRT), losing its exit status
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    run(sys.argv[1:])
