"""Training: the released loss, the iteration-based loop, checkpoints and resuming.

One process, or several under torchrun (DistributedDataParallel): the global batch of a
step is the same whatever the number of processes; each process takes an equal share.
Only rank 0 writes files.
"""
import os
import random
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import test as evaluation
from dataset import TrainBatches, epochs_for
from model import BaSNet
from utils import atomic_write, save_torch, seed_worker

CHECKPOINT = "last.pt"


# ----------------------------------------------------------------------------- loss
def branch_loss(score, labels, background):
    """Binary cross-entropy (mean over batch x classes) between softmax video scores and
    targets normalised to sum 1: [y, 1] / (|y| + 1) with background present, [y, 0] / |y|
    without it (background=False also covers plain MIL with no background class)."""
    if score.shape[1] == labels.shape[1] + 1:
        bg = torch.full_like(labels[:, :1], 1.0 if background else 0.0)
        labels = torch.cat([labels, bg], dim=1)
    target = labels / labels.sum(dim=1, keepdim=True)
    # torch's BCELoss written out (logs clamped at -100 the same way), so that a NaN score
    # gives a NaN loss that the loop reports, instead of an error inside the kernel
    log_p = torch.log(score).clamp(min=-100)
    log_q = torch.log(1 - score).clamp(min=-100)
    return -(target * log_p + (1 - target) * log_q).mean()


def compute_loss(out, labels, alpha):
    """L = L_base + L_supp + alpha * L_norm over the branches the variant has;
    L_norm = mean over the batch of sum_t W_t."""
    zero = labels.new_zeros(())
    losses = {"loss_base": zero, "loss_supp": zero, "loss_norm": zero}
    if "score_base" in out:
        has_bg = out["score_base"].shape[1] == labels.shape[1] + 1
        losses["loss_base"] = branch_loss(out["score_base"], labels, background=has_bg)
    if "score_supp" in out:
        losses["loss_supp"] = branch_loss(out["score_supp"], labels, background=False)
        losses["loss_norm"] = out["fore_weights"].sum(dim=(1, 2)).mean()
    losses["loss_total"] = losses["loss_base"] + losses["loss_supp"] + alpha * losses["loss_norm"]
    return losses


# ----------------------------------------------------------------------------- checkpoints
def build_model(cfg, feature_dim, num_classes):
    return BaSNet(feature_dim, num_classes, cfg.num_segments, r=cfg.r, hidden_dim=cfg.hidden_dim,
                  dropout=cfg.dropout, variant=cfg.variant)


def build_optimizer(cfg, model):
    """The release's optimiser: Adam with coupled L2 weight decay."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)


def rng_state():
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()],
            "random": random.getstate()}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["random"])


def save_checkpoint(path, model, optimizer, step, cfg, classes, feature_dim, rng_states, history):
    save_torch(path, {
        "format": "basnet-pytorch/1", "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "step": step, "config": vars(cfg), "classes": classes, "feature_dim": feature_dim,
        "rng": rng_states, "history": history,
    })


# ----------------------------------------------------------------------------- loop
class Logger:
    """TensorBoard (rank 0) plus losses collected on the device and read back in blocks,
    so that the loop does not wait for the GPU after every step."""

    def __init__(self, run_dir, start_step, enabled):
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter
            # purge_step drops events a killed run wrote after its last checkpoint
            self.writer = SummaryWriter(run_dir, purge_step=start_step if start_step else None)
        self.pending = []  # (step, stacked loss tensor)
        self.log_path = os.path.join(run_dir, "train_log.txt")  # every step's losses, plain text
        if enabled and start_step and os.path.exists(self.log_path):
            # like purge_step: drop the lines a killed run wrote after its last checkpoint
            with open(self.log_path) as f:
                lines = [line for line in f if int(line.split()[1]) <= start_step]
            atomic_write(self.log_path, lambda f: f.write("".join(lines).encode()))

    def add_losses(self, step, losses):
        self.pending.append((step, torch.stack([v.detach().float() for v in losses.values()])))
        self.names = list(losses)

    def flush(self, world_size):
        """Write the pending losses (averaged over processes); returns the last ones, or
        raises FloatingPointError naming the first step whose loss is not finite."""
        if not self.pending:
            return None
        steps = [s for s, _ in self.pending]
        values = torch.stack([v for _, v in self.pending])
        self.pending = []
        if world_size > 1:
            dist.all_reduce(values)
            values /= world_size
        values = values.cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            raise FloatingPointError(f"training loss became {values[bad[0]].tolist()} at step {steps[bad[0]] + 1}")
        if self.writer:
            for step, row in zip(steps, values):
                for name, v in zip(self.names, row):
                    self.writer.add_scalar(f"train/{name}", float(v), step + 1)
            with open(self.log_path, "a") as f:
                f.writelines(f"step {step + 1} " + " ".join(f"{n} {v!r}" for n, v in zip(self.names, row.tolist()))
                             + "\n" for step, row in zip(steps, values))
        return dict(zip(self.names, values[-1].tolist()))

    def add_eval(self, step, results, lr):
        if not self.writer:
            return
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("test/accuracy", results["accuracy"], step)
        self.writer.add_scalar("test/classification_mAP", results["classification_mAP"], step)
        for t, m in zip(results["tiou"], results["mAP"]):
            self.writer.add_scalar(f"test/mAP@{t:g}", m, step)
        self.writer.add_scalar("test/average_mAP", results["average_mAP"], step)
        for name, v in results.get("averages", {}).items():
            self.writer.add_scalar(f"test/average_mAP[{name}]", v, step)
        self.writer.flush()

    def close(self):
        if self.writer:
            self.writer.close()


def train_step(net, optimizer, scaler, autocast, feats, labels, alpha):
    """One optimisation step; returns the losses (tensors on the device, not synchronised)."""
    net.train()
    with autocast:
        out = net(feats)
    losses = compute_loss({k: v.float() for k, v in out.items()}, labels, alpha)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["loss_total"]).backward()
    scaler.step(optimizer)
    scaler.update()
    return losses


def make_batches(cfg, train_set, device, rank, world_size, start_step):
    """An iterator over (features, labels) from start_step on. When the features sit on the
    device (in memory and small enough) batches are gathered there directly; otherwise a
    DataLoader gathers them on the CPU, in --num_workers processes."""
    batches = TrainBatches(train_set, cfg.batch_size, cfg.num_segments, cfg.seed, rank, world_size, cfg.sampling)
    if train_set.store.device.type == "cuda" or cfg.num_workers == 0:
        return (batches[s] for s in range(start_step, cfg.num_iters))
    g = torch.Generator()
    g.manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start_step, cfg.num_iters), num_workers=cfg.num_workers,
        worker_init_fn=seed_worker, generator=g, pin_memory=device.type == "cuda",
        persistent_workers=False)
    return iter(loader)


def train(cfg, data, device, rank=0, world_size=1, resume_state=None, log=print):
    """Train per cfg on data = (classes, train_set, test_set); returns the model and the
    results of the last evaluation (None on ranks other than 0)."""
    classes, train_set, test_set = data
    is_main = rank == 0
    model = build_model(cfg, train_set.feature_dim, len(classes)).to(device)
    optimizer = build_optimizer(cfg, model)
    start_step, history = 0, []
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        start_step, history = resume_state["step"], resume_state.get("history", [])
        set_rng_state(resume_state["rng"][rank])
    elif cfg.model_file:
        model.load_state_dict(evaluation.load_weights(cfg.model_file, model, train_set.feature_dim))
    for videos in (train_set, test_set):
        videos.store.move_if_fits(device)
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    batches = make_batches(cfg, train_set, device, rank, world_size, start_step)
    logger = Logger(cfg.output_path, start_step, is_main)
    autocast = evaluation.autocast_for(cfg, device)
    scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16" and device.type == "cuda")
    if is_main:
        log(f"training {cfg.variant} on {len(train_set)} videos ({len(classes)} classes, feature width "
            f"{train_set.feature_dim}), steps {start_step}..{cfg.num_iters}, global batch {cfg.batch_size}, "
            f"about {epochs_for(cfg.num_iters, cfg.batch_size, len(train_set))} epochs, device {device}"
            + (f", {world_size} processes" if world_size > 1 else ""))
    bar = tqdm(total=cfg.num_iters, initial=start_step, disable=not is_main or cfg.no_progress or not sys.stderr.isatty(),
               dynamic_ncols=True)
    results, last_losses, t0 = None, None, time.time()
    for step in range(start_step, cfg.num_iters):
        feats, labels = next(batches)
        losses = train_step(net, optimizer, scaler, autocast, feats.to(device, non_blocking=True),
                            labels.to(device, non_blocking=True), cfg.alpha)
        logger.add_losses(step, losses)
        bar.update(1)
        done = step + 1
        evaluate_now = done % cfg.eval_every == 0 or done == cfg.num_iters
        save_now = done % cfg.save_every == 0 or done == cfg.num_iters
        if evaluate_now or save_now or done % 10 == 0:
            last_losses = logger.flush(world_size)  # raises on a NaN loss, before any save
            bar.set_postfix(loss=f"{last_losses['loss_total']:.4f}")
        if evaluate_now:
            if is_main:
                results = evaluation.evaluate(model, test_set, classes, cfg, device, output_dir=cfg.output_path)
                history.append({"step": done, "average_mAP": results["average_mAP"],
                                "mAP": results["mAP"], "accuracy": results["accuracy"],
                                "loss_total": last_losses["loss_total"], "elapsed_s": time.time() - t0})
                logger.add_eval(done, results, optimizer.param_groups[0]["lr"])
                bar.write(f"step {done}: loss {last_losses['loss_total']:.4f}, accuracy {results['accuracy']:.3f}, "
                          f"average mAP {100 * results['average_mAP']:.2f}")
            if world_size > 1:
                dist.barrier()
        if save_now:
            states = [rng_state()]
            if world_size > 1:
                states = [None] * world_size
                dist.all_gather_object(states, rng_state())
            if is_main:
                save_checkpoint(os.path.join(cfg.output_path, CHECKPOINT), model, optimizer, done, cfg,
                                classes, train_set.feature_dim, states, history)
    bar.close()
    logger.close()
    return model, results


def load_resume(path):
    """The checkpoint a --resume argument points to (a run folder or a file)."""
    ckpt_path = os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path
    state = evaluation.read_checkpoint(ckpt_path)
    if "optimizer" not in state:
        raise SystemExit(f"error: {ckpt_path} holds weights only (no optimizer state); "
                         "use --model_file to start a new run from it")
    return ckpt_path, state

