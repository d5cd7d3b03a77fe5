"""Which videos an extraction takes: the files that are videos, how a folder is listed, and
this process's part of them (--shard K/N, or its place among torchrun's processes).

A folder stands for its files (not its subfolders) whose extension is one of
options.VIDEO_EXTENSIONS; a video's id is its file name without the extension. Bad input
raises options.ConfigError (a utils.UserError) naming the file or option.
"""
import datetime
import os

import torch
import torch.distributed as dist

from options import VIDEO_EXTENSIONS, ConfigError


def video_id(path):
    return os.path.splitext(os.path.basename(path))[0]


def list_videos(inputs):
    """{video id: path}, sorted by id, of the files and folders given."""
    found = {}
    for item in inputs:
        if os.path.isdir(item):
            paths = [os.path.join(item, f) for f in sorted(os.listdir(item))
                     if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS and not f.startswith(".")
                     and os.path.isfile(os.path.join(item, f))]
        elif os.path.isfile(item):
            paths = [item]
        else:
            raise ConfigError(f"{item}: no such file or folder")
        for path in paths:
            vid = video_id(path)
            if vid in found and os.path.abspath(found[vid]) != os.path.abspath(path):
                raise ConfigError(f"two videos have the id {vid}: {found[vid]} and {path}")
            found[vid] = path
    if not found:
        raise ConfigError(f"no video file in {' '.join(inputs)} (extensions: {' '.join(sorted(VIDEO_EXTENSIONS))})")
    return dict(sorted(found.items()))


def shard(ids, k, n):
    """Part k (1..n) of the sorted ids: every n-th one, starting at the k-th."""
    return sorted(ids)[k - 1::n]


def parse_shard(text):
    """(K, N) of --shard K/N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must be K/N with integers 1 <= K <= N, got {text!r}") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard must be K/N with 1 <= K <= N, got {text!r}")
    return k, n


def placement(text, env, device, gpus):
    """((K, N), device, distributed) of this process: --shard K/N (`text`) on `device`, or under
    torchrun (WORLD_SIZE > 1 in `env`) part RANK + 1 of WORLD_SIZE (RANK counts the processes of
    every machine; LOCAL_RANK only this machine's), on CUDA the GPU cuda:LOCAL_RANK of the
    `gpus` this machine has."""
    world = int(env.get("WORLD_SIZE", "1"))
    if world == 1:
        return parse_shard(text or "1/1"), device, False
    if text is not None:
        raise ConfigError(f"--shard {text} and torchrun's {world} processes both split the videos: "
                          "give --shard only to processes started one by one")
    if device.type == "cuda":
        local = int(env.get("LOCAL_RANK", "0"))
        if local >= gpus:
            raise ConfigError(f"LOCAL_RANK {local}, but this machine has {gpus} GPU(s): "
                              "--nproc_per_node must be at most the number of GPUs")
        device = torch.device("cuda", local)
    return (int(env["RANK"]) + 1, world), device, True


def all_finished(distributed):
    """True in the process that writes what covers every part (gt.json, the split files): the
    only one, or under torchrun (`distributed`) rank 0 once every process has finished."""
    if not distributed:
        return True
    # gloo on every device: a barrier of CPU processes. The timeout covers the longest
    # shard: the processes arrive when their videos are done, hours apart.
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=30))
    try:
        dist.barrier()
        return dist.get_rank() == 0
    finally:
        dist.destroy_process_group()
