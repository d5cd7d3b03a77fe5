"""Training: the released loss, the optimiser, the iteration-based loop and its logging.

One process, or several under torchrun (DistributedDataParallel): the global batch of a
step is the same whatever the number of processes; each process takes an equal share.
Only rank 0 writes files.
"""
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from checkpoint import CHECKPOINT, initial_weights, rng_state, save_checkpoint, set_rng_state
from dataset import TrainBatches, epochs_for
from evaluation import Evaluator
from model import BaSNet
from utils import atomic_write, autocast_for, save_json, seed_worker

LOG_EVERY = 10   # steps between reading the losses back from the device (and writing them)


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


# ----------------------------------------------------------------------------- loop
def reduce_losses(pending, world_size):
    """(steps, values (S, K) numpy) of the pending (step, stacked losses) pairs, averaged
    over the processes."""
    steps = [step for step, _ in pending]
    values = torch.stack([v for _, v in pending])
    if world_size > 1:
        dist.all_reduce(values)
        values /= world_size
    return steps, values.cpu().numpy()


def check_finite(steps, values):
    """FloatingPointError naming the first step whose losses are not all finite."""
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise FloatingPointError(f"training loss became {values[bad[0]].tolist()} at step {steps[bad[0]] + 1}")


class TrainLog:
    """What rank 0 writes about training: every step's losses to TensorBoard and to
    train_log.txt, and each evaluation to TensorBoard."""

    def __init__(self, run_dir, start_step):
        from tensorboardX import SummaryWriter
        # purge_step drops events a killed run wrote after its last checkpoint
        self.writer = SummaryWriter(run_dir, purge_step=start_step if start_step else None)
        self.path = os.path.join(run_dir, "train_log.txt")
        if start_step and os.path.exists(self.path):
            # the same for the text log
            with open(self.path) as f:
                lines = [line for line in f if int(line.split()[1]) <= start_step]
            atomic_write(self.path, lambda f: f.write("".join(lines).encode()))

    def losses(self, names, steps, values):
        for step, row in zip(steps, values):
            for name, v in zip(names, row):
                self.writer.add_scalar(f"train/{name}", float(v), step + 1)
        with open(self.path, "a") as f:
            f.writelines(f"step {step + 1} " + " ".join(f"{n} {v!r}" for n, v in zip(names, row.tolist())) + "\n"
                         for step, row in zip(steps, values))

    def evaluation(self, step, results, lr):
        add = self.writer.add_scalar
        add("train/lr", lr, step)
        add("test/accuracy", results["accuracy"], step)
        add("test/classification_mAP", results["classification_mAP"], step)
        for t, m in zip(results["tiou"], results["mAP"]):
            add(f"test/mAP@{t:g}", m, step)
        add("test/average_mAP", results["average_mAP"], step)
        for name, v in results.get("averages", {}).items():
            add(f"test/average_mAP[{name}]", v, step)
        self.writer.flush()

    def close(self):
        self.writer.close()


def train_step(net, optimizer, scaler, autocast, *, feats, labels, alpha):
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


def make_batches(cfg, train_set, device, *, rank, world_size, start_step):
    """An iterator over (features, labels) from start_step on. When the features sit on the
    device (in memory and small enough) batches are gathered there directly; otherwise a
    DataLoader gathers them on the CPU, in --num_workers processes."""
    batches = TrainBatches(train_set, cfg.batch_size, cfg.num_segments, cfg.seed, rank=rank, world_size=world_size,
                           sampling=cfg.sampling)
    if train_set.store.device.type == "cuda" or cfg.num_workers == 0:
        return (batches[s] for s in range(start_step, cfg.num_iters))
    g = torch.Generator()
    g.manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(start_step, cfg.num_iters), num_workers=cfg.num_workers,
        worker_init_fn=seed_worker, generator=g, pin_memory=device.type == "cuda",
        persistent_workers=False)
    return iter(loader)


def train(cfg, data, device, rank=0, world_size=1, *, resume_state=None, start_state=None, log=print):
    """Train per cfg on data = (classes, train_set, test_set); returns the model and the
    results of the last evaluation (None on ranks other than 0). start_state: the
    --model_file checkpoint when the caller has read it already (main.py). Rank 0 creates the run
    folder cfg.output_path, with its config.json, only once the ground truth, the model and
    its starting weights are checked: a refused start writes nothing."""
    classes, train_set, test_set = data
    is_main = rank == 0
    evaluate = Evaluator(cfg, test_set, classes)   # every process checks the ground truth now, before training
    model = build_model(cfg, train_set.feature_dim, len(classes)).to(device)
    optimizer = build_optimizer(cfg, model)
    start_step, history = 0, []
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        start_step, history = resume_state["step"], resume_state.get("history", [])
        set_rng_state(resume_state["rng"][rank])
    elif cfg.model_file:
        model.load_state_dict(initial_weights(cfg.model_file, model, feature_dim=train_set.feature_dim,
                                              num_classes=len(classes), cfg=cfg, state=start_state))
    for videos in (train_set, test_set):
        videos.store.move_if_fits(device)
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    batches = make_batches(cfg, train_set, device, rank=rank, world_size=world_size, start_step=start_step)
    log_file = None
    if is_main:
        save_json(os.path.join(cfg.output_path, "config.json"), vars(cfg))
        log_file = TrainLog(cfg.output_path, start_step)
    autocast = autocast_for(cfg.amp, device)
    scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16" and device.type == "cuda")
    if is_main:
        log(f"training {cfg.variant} on {len(train_set)} videos ({len(classes)} classes, feature width "
            f"{train_set.feature_dim}), steps {start_step}..{cfg.num_iters}, global batch {cfg.batch_size}, "
            f"about {epochs_for(cfg.num_iters, cfg.batch_size, len(train_set))} epochs, device {device}"
            + (f", {world_size} processes" if world_size > 1 else ""))
    bar = tqdm(total=cfg.num_iters, initial=start_step, disable=not is_main or cfg.no_progress or not sys.stderr.isatty(),
               dynamic_ncols=True)
    results, last_losses, pending, t0 = None, None, [], time.time()
    for step in range(start_step, cfg.num_iters):
        feats, labels = next(batches)
        losses = train_step(net, optimizer, scaler, autocast, feats=feats.to(device, non_blocking=True),
                            labels=labels.to(device, non_blocking=True), alpha=cfg.alpha)
        # kept on the device: reading them back every step would wait for the GPU
        pending.append((step, torch.stack([v.detach().float() for v in losses.values()])))
        bar.update(1)
        done = step + 1
        evaluate_now = done % cfg.eval_every == 0 or done == cfg.num_iters
        save_now = done % cfg.save_every == 0 or done == cfg.num_iters
        # every step's losses are checked before anything is evaluated or saved
        if evaluate_now or save_now or done % LOG_EVERY == 0:
            steps, values = reduce_losses(pending, world_size)
            pending = []
            check_finite(steps, values)
            if log_file:
                log_file.losses(list(losses), steps, values)
            last_losses = dict(zip(losses, values[-1].tolist()))
            bar.set_postfix(loss=f"{last_losses['loss_total']:.4f}")
        if evaluate_now:
            if is_main:
                results = evaluate(model, device, output_dir=cfg.output_path)
                if "mAP" in results:
                    history.append({"step": done, "average_mAP": results["average_mAP"],
                                    "mAP": results["mAP"], "accuracy": results["accuracy"],
                                    "loss_total": last_losses["loss_total"], "elapsed_s": time.time() - t0})
                    log_file.evaluation(done, results, optimizer.param_groups[0]["lr"])
                    bar.write(f"step {done}: loss {last_losses['loss_total']:.4f}, accuracy {results['accuracy']:.3f}, "
                              f"average mAP {100 * results['average_mAP']:.2f}")
                else:
                    bar.write(f"step {done}: loss {last_losses['loss_total']:.4f}; {results['num_predictions']} "
                              "predictions written (the test subset has no annotation: no mAP)")
            if world_size > 1:
                dist.barrier()
        if save_now:
            states = [rng_state()]
            if world_size > 1:
                states = [None] * world_size
                dist.all_gather_object(states, rng_state())
            if is_main:
                save_checkpoint(os.path.join(cfg.output_path, CHECKPOINT), model=model, optimizer=optimizer,
                                step=done, cfg=cfg, classes=classes, feature_dim=train_set.feature_dim,
                                rng_states=states, history=history)
    bar.close()
    if log_file:
        log_file.close()
    return model, results
