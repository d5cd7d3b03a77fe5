"""Checkpoints: writing, reading and checking them, the random-number state they carry,
and the model a checkpoint describes.

Our checkpoint (`last.pt`) is a dict with "format": FORMAT, the model's and the optimiser's
state, the step, the config, the class list, the feature width, one RNG state per process
and the evaluation history. A bare state_dict (the authors' released .pkl) is read as
{"model": state_dict}. Problems raise CheckpointError, naming the file.
"""
import os
import random

import numpy as np
import torch

from dataset import THUMOS14_CLASSES, dataset_classes
from model import BaSNet, variant_parts
from utils import UserError, save_torch

FORMAT = "basnet-pytorch/1"
CHECKPOINT = "last.pt"   # the file name of a run's resumable checkpoint


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model or data at hand."""


# ----------------------------------------------------------------------------- RNG state
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


# ----------------------------------------------------------------------------- files
def save_checkpoint(path, *, model, optimizer, step, cfg, classes, feature_dim, rng_states, history):
    """Write the resumable checkpoint (the dict this module's docstring describes) to path."""
    save_torch(path, {
        "format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "step": step, "config": vars(cfg), "classes": classes, "feature_dim": feature_dim,
        "rng": rng_states, "history": history,
    })


def read_checkpoint(path):
    """{"model": state_dict, ...} from one of our checkpoints or a bare state_dict."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, ...
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        if state.get("format") != FORMAT:
            raise CheckpointError(f"{path} has format {state.get('format')!r}; this code reads {FORMAT!r}")
        return state
    if isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values()):
        return {"model": state}
    raise CheckpointError(f"{path} is neither a BaS-Net checkpoint nor a state_dict")


def resume_checkpoint(path):
    """(checkpoint path, state) of a --resume argument: a run folder or a checkpoint file."""
    ckpt_path = os.path.join(path, CHECKPOINT) if os.path.isdir(path) else path
    state = read_checkpoint(ckpt_path)
    if "optimizer" not in state:
        raise CheckpointError(f"{ckpt_path} holds weights only (no optimizer state); "
                              "use --model_file to start a new run from it")
    return ckpt_path, state


# ----------------------------------------------------------------------------- models
def checkpoint_shapes(weights):
    """(feature width, number of CAS outputs, hidden width, has filter) of a state_dict."""
    try:
        conv1, conv3 = weights["cas_module.conv_1.0.weight"], weights["cas_module.conv_3.0.weight"]
    except KeyError as e:
        raise CheckpointError(f"the checkpoint lacks {e.args[0]}: not a BaS-Net state_dict") from None
    return conv1.shape[1], conv3.shape[0], conv1.shape[0], "filter_module.conv_1.0.weight" in weights


def model_for_checkpoint(state, cfg, classes, feature_dim, path):
    """A BaSNet shaped like the checkpoint, after checking it fits the data."""
    num_classes = len(classes)
    width, outputs, hidden, has_filter = checkpoint_shapes(state["model"])
    if width != feature_dim:
        raise CheckpointError(f"{path} expects features {width} wide, but the dataset's are "
                              f"{feature_dim} (--modal {cfg.modal})")
    saved = state.get("config", {})
    variant = saved.get("variant") or ("basnet" if has_filter else
                                       "base_bg" if outputs == num_classes + 1 else "baseline")
    background = variant_parts(variant)[2]
    if outputs != num_classes + background:
        raise CheckpointError(f"{path} was trained for {outputs - background} classes"
                              f"{' (+ background)' if background else ''}, but the dataset has {num_classes}")
    if state.get("classes") and list(state["classes"]) != list(classes):
        raise CheckpointError(f"{path} was trained with the classes {state['classes']}, "
                              f"but the dataset's are {classes}")
    model = BaSNet(feature_dim, num_classes, cfg.num_segments, r=cfg.r, hidden_dim=hidden, variant=variant)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit the model: {str(e).splitlines()[0]}") from None
    return model


def check_start_weights(weights, path, *, hidden_dim, variant, feature_dim=None, num_classes=None, saved=None):
    """Raise CheckpointError, naming the checkpoint `path` and every difference, when the
    state_dict `weights` cannot start a run of --hidden_dim `hidden_dim` and --variant
    `variant`. feature_dim and num_classes (None while the data is not read yet) are
    checked when given; `saved` is the checkpoint's config, if it has one (it names the
    checkpoint's variant in the message)."""
    width, outputs, hidden, has_filter = checkpoint_shapes(weights)
    _, supp, background = variant_parts(variant)
    there = f"--variant {saved['variant']}" if saved and saved.get("variant") else "the checkpoint"
    problems = []
    if hidden != hidden_dim:
        problems.append(f"--hidden_dim {hidden} there, {hidden_dim} here")
    if has_filter != supp:
        problems.append(f"{there} has {'a' if has_filter else 'no'} filter module, --variant {variant} "
                        f"{'needs one' if supp else 'has none'}")
    if feature_dim is not None and width != feature_dim:
        problems.append(f"features {width} wide there, {feature_dim} here")
    if num_classes is not None and outputs != num_classes + background:
        problems.append(f"{outputs} CAS outputs there, {num_classes + background} here "
                        f"({num_classes} classes{' + background' if background else ''}, --variant {variant})")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit this run's model: {'; '.join(problems)}")


def initial_weights(path, model, *, feature_dim, num_classes, cfg, state=None):
    """The state_dict of a checkpoint that starts a run (main.py --model_file), checked
    against the run's model (cfg's --hidden_dim and --variant, the data's feature width
    and classes). state: the checkpoint at `path` when the caller has read it already."""
    state = state or read_checkpoint(path)
    check_start_weights(state["model"], path, hidden_dim=cfg.hidden_dim, variant=cfg.variant,
                        feature_dim=feature_dim, num_classes=num_classes, saved=state.get("config"))
    own = model.state_dict()
    differ = sorted(set(own) ^ set(state["model"])) or [k for k in own if own[k].shape != state["model"][k].shape]
    if differ:  # anything the shapes above do not cover
        raise CheckpointError(f"checkpoint {path} does not fit this run's model: parameter {differ[0]} differs")
    return state["model"]


def checkpoint_classes(state, class_list, data_path):
    """Class names for a checkpoint used without a dataset: saved in our checkpoints; for a
    bare state_dict from --class_list, the dataset's class list, or THUMOS14's 20 classes."""
    if state.get("classes"):
        return list(state["classes"])
    if class_list or os.path.exists(os.path.join(data_path, "gt.json")):
        return dataset_classes(data_path, class_list)
    if checkpoint_shapes(state["model"])[1] in (20, 21):
        return THUMOS14_CLASSES
    raise CheckpointError("the checkpoint does not name its classes; give --class_list")
