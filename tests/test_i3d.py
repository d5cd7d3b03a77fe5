"""i3d.py: the pytorch-i3d layout (every key and shape of rgb_imagenet.pt / flow_imagenet.pt,
listed in tests/data/pytorch_i3d_state_dict.json), strict loading, TF "SAME" padding, the
BatchNorm settings of the TensorFlow weights (one unit against a value computed by hand), the
feature output, and the fast inference path (FastI3d) against the plain network. Random
weights stand in for the published ones."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from video.i3d import (FastI3d, FoldedUnit3D, InceptionI3d, MaxPool3dSame, MaxPool3dSelfPadding, Unit3D,
                 WeightsError, fast_i3d, load_i3d, random_i3d, same_padding)

LAYOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pytorch_i3d_state_dict.json")


@pytest.fixture(scope="module")
def rgb_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("weights") / "rgb_imagenet.pt")
    torch.save(random_i3d(3).state_dict(), path)
    return path


def test_state_dict_is_the_pytorch_i3d_layout():
    with open(LAYOUT) as f:
        layout = json.load(f)
    for stream, channels in (("rgb", 3), ("flow", 2)):
        got = [(k, list(v.shape)) for k, v in InceptionI3d(in_channels=channels).state_dict().items()]
        assert got == list(layout[stream].items()), stream       # same keys, shapes and order
        assert len(got) == 344


def test_strict_load_with_and_without_num_batches_tracked(tmp_path):
    net = random_i3d(2, seed=1)
    state = net.state_dict()
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(state)
    for name, saved in (("new.pt", state), ("old.pt", old)):
        path = str(tmp_path / name)
        torch.save(saved, path)
        loaded = load_i3d(path, in_channels=2, device="cpu", fast=False)
        assert isinstance(loaded, InceptionI3d) and not loaded.training
        for k, v in loaded.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                assert torch.equal(v, state[k]), k



def test_dataparallel_module_prefix_is_stripped(tmp_path, rgb_file):
    """A file saved from a DataParallel-wrapped network ("module." before every key, in a
    {"state_dict": ...} wrapper too) gives the features of the unprefixed file."""
    state = torch.load(rgb_file, weights_only=True)
    x = torch.rand(1, 3, 16, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        want = load_i3d(rgb_file, 3).features(x)
        for name, saved in (("bare.pt", {"module." + k: v for k, v in state.items()}),
                            ("wrapped.pt", {"state_dict": {"module." + k: v for k, v in state.items()}})):
            path = str(tmp_path / name)
            torch.save(saved, path)
            assert torch.equal(load_i3d(path, 3).features(x), want), name

def one_line_error(path, in_channels=3):
    with pytest.raises(WeightsError) as e:
        load_i3d(path, in_channels=in_channels, device="cpu")
    message = str(e.value)
    assert "\n" not in message and path in message
    return message


def test_wrong_missing_unexpected_or_misshaped_key_is_named(tmp_path, rgb_file):
    state = torch.load(rgb_file, weights_only=True)
    missing = dict(state)
    del missing["Mixed_4c.b2b.bn.running_var"]
    renamed = dict(state)
    renamed["Mixed_4c.b2b.bn.running_varx"] = renamed.pop("Mixed_4c.b2b.bn.running_var")
    for name, bad, key in (("missing.pt", missing, "missing key Mixed_4c.b2b.bn.running_var"),
                           ("renamed.pt", renamed, "missing key Mixed_4c.b2b.bn.running_var")):
        path = str(tmp_path / name)
        torch.save(bad, path)
        assert key in one_line_error(path)
    extra = dict(state, **{"Mixed_6a.b0.conv3d.weight": torch.zeros(1)})
    path = str(tmp_path / "extra.pt")
    torch.save(extra, path)
    assert "unexpected key Mixed_6a.b0.conv3d.weight" in one_line_error(path)
    # an RGB file loaded as the flow stream: the first convolution has 3 input channels
    assert "Conv3d_1a_7x7.conv3d.weight has shape (64, 3, 7, 7, 7), expected (64, 2, 7, 7, 7)" \
        in one_line_error(rgb_file, in_channels=2)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    assert "not a readable torch weight file" in one_line_error(str(junk))
    assert "not found" in one_line_error(str(tmp_path / "absent.pt"))


def test_logits_width_read_from_the_file(tmp_path):
    path = str(tmp_path / "charades.pt")
    torch.save(InceptionI3d(157, in_channels=3).state_dict(), path)
    assert load_i3d(path, 3).logits.conv3d.out_channels == 157
    assert load_i3d(path, 3, fast=False).logits.conv3d.out_channels == 157


def test_same_padding_is_tensorflow_same():
    # total = max(k - s, 0) if s divides n else max(k - n % s, 0); floor before, ceil after
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(16, 7, 2) == (2, 3)
    assert same_padding(15, 7, 2) == (3, 3)
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(8, 3, 1) == (1, 1)
    assert same_padding(7, 2, 2) == (0, 1)
    assert same_padding(4, 1, 1) == (0, 0)
    # the unit (F.pad copy, then its convolution module) equals explicit padding
    torch.manual_seed(0)
    x = torch.randn(1, 2, 7, 9, 10)
    for kernel, stride in (((3, 3, 3), (1, 1, 1)), ((7, 7, 7), (2, 2, 2)), ((1, 3, 3), (1, 2, 2))):
        unit = Unit3D(2, 4, kernel, stride, batch_norm=False, relu=False, bias=True)
        pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]
        padded = F.pad(x, [p for pair in reversed(pads) for p in pair])
        want = F.conv3d(padded, unit.conv3d.weight, unit.conv3d.bias, stride)
        got = unit(x)
        assert got.shape[2:] == tuple(-(-n // s) for n, s in zip(x.shape[2:], stride))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def relative_difference(got, want):
    return ((got - want).abs().max() / want.abs().max()).item()


def test_features_are_the_final_average_pool_at_224(rgb_file):
    """A 16 x 224 x 224 snippet: Mixed_5c is 2 x 7 x 7 and the [2, 7, 7] pool gives one vector;
    load_i3d's fast path gives the plain network's features and logits within 1e-4."""
    net = load_i3d(rgb_file, 3, fast=False)
    fast = load_i3d(rgb_file, 3)
    assert isinstance(fast, FastI3d)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.inference_mode():
        trunk = net.trunk(x)
        assert trunk.shape == (1, 1024, 2, 7, 7)
        pooled = F.avg_pool3d(trunk, (2, 7, 7), stride=1)
        assert pooled.shape == (1, 1024, 1, 1, 1)
        used = []
        net.trunk = lambda y: used.append(y) or trunk        # features of this trunk without computing it again
        feats = net.features(x)
        assert len(used) == 1
        torch.testing.assert_close(feats, pooled.flatten(1), rtol=1e-5, atol=1e-6)
        assert feats.abs().max() > 1e-3    # not a degenerate network
        logits = net.logits(pooled).flatten(1)
        assert logits.shape == (1, 400)
        fast_feats = fast.features(x)
        assert fast_feats.shape == (1, 1024) and fast_feats.dtype == torch.float32
        assert relative_difference(fast_feats, feats) < 1e-4
        assert relative_difference(fast(x), logits) < 1e-4


def test_features_on_small_inputs_are_deterministic(rgb_file):
    net = load_i3d(rgb_file, 3)
    torch.manual_seed(1)
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    with torch.inference_mode():
        a, b = net.features(x), net.features(x)
        logits = net(x)
    assert a.shape == (2, 1024) and a.dtype == torch.float32 and logits.shape == (2, 400)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


# ----------------------------------------------------------------------------- TensorFlow's BatchNorm
def test_batchnorm_settings_are_the_tensorflow_weights():
    """Every BatchNorm of both streams: eps 1e-3 (TensorFlow's I3D; torch's default is 1e-5)
    and momentum 0.01 (pytorch-i3d's)."""
    for channels in (3, 2):
        bns = [m for m in InceptionI3d(in_channels=channels).modules() if isinstance(m, torch.nn.BatchNorm3d)]
        assert len(bns) == 57   # every unit but the logits
        assert all(bn.eps == 1e-3 and bn.momentum == 0.01 and bn.affine and bn.track_running_stats
                   for bn in bns)


def test_one_unit_against_a_value_computed_by_hand():
    """A Unit3D (kernel 1 x 3 x 3, stride 1 x 2 x 2, BatchNorm, ReLU) on a 1 x 4 x 4 input:
    SAME padding is one zero row and column after (none before); its output computed with
    numpy from the formulas, eps 1e-3 with running variances of the same order, so eps = 1e-5
    changes the result by ~40 %."""
    x = np.arange(2 * 16, dtype=np.float64).reshape(1, 2, 1, 4, 4) % 7 - 3       # (B, C, T, H, W)
    w = (np.arange(3 * 2 * 9, dtype=np.float64).reshape(3, 2, 1, 3, 3) % 5 - 2) / 4
    gamma, beta = np.array([1.0, 0.5, 2.0]), np.array([0.1, -0.2, 0.3])
    mean, var = np.array([0.5, -1.0, 0.0]), np.array([1e-3, 2e-3, 5e-4])
    # independent computation: pad (0, 1) in H and W, then every output position by its sums
    padded = np.zeros((1, 2, 1, 5, 5))
    padded[:, :, :, :4, :4] = x
    conv = np.zeros((1, 3, 1, 2, 2))
    for o in range(3):
        for i in range(2):
            for j in range(2):
                conv[0, o, 0, i, j] = (padded[0, :, 0, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w[o, :, 0]).sum()
    scale = (gamma / np.sqrt(var + 1e-3)).reshape(1, 3, 1, 1, 1)
    want = np.maximum((conv - mean.reshape(1, 3, 1, 1, 1)) * scale + beta.reshape(1, 3, 1, 1, 1), 0)
    assert (want > 0).sum() >= 6          # most outputs pass the ReLU: the value is informative

    unit = Unit3D(2, 3, kernel=(1, 3, 3), stride=(1, 2, 2))
    with torch.no_grad():
        unit.conv3d.weight.copy_(torch.from_numpy(w))
        for name, value in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
            getattr(unit.bn, name).copy_(torch.from_numpy(value))
    unit.eval()
    xt = torch.from_numpy(x).float()
    with torch.no_grad():
        got = unit(xt).double().numpy()
        fast = FoldedUnit3D(unit)(xt.contiguous(memory_format=torch.channels_last_3d)).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast, want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- the fast path
def test_fast_pools_pad_themselves_as_tensorflow_same():
    """MaxPool3dSelfPadding equals -inf SAME padding (TensorFlow) on any input, and zero
    padding (MaxPool3dSame, pytorch-i3d) on ReLU outputs, for odd and even sizes."""
    torch.manual_seed(0)
    for kernel, stride in (((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)),
                           ((3, 3, 3), (1, 1, 1))):
        plain = MaxPool3dSame(kernel, stride)
        fast = MaxPool3dSelfPadding(plain)
        for size in ((4, 6, 7), (5, 9, 8), (1, 3, 2), (2, 5, 5)):
            x = torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last_3d)
            pads = [same_padding(n, k, s) for n, k, s in zip(size, kernel, stride)]
            inf_padded = F.pad(x, [p for pair in reversed(pads) for p in pair], value=-float("inf"))
            want = F.max_pool3d(inf_padded, kernel, stride)
            assert want.shape[2:] == tuple(-(-n // s) for n, s in zip(size, stride))
            assert torch.equal(fast(x), want), (kernel, stride, size)
            assert torch.equal(fast(x.relu()), plain(x.relu())), (kernel, stride, size)


@pytest.mark.parametrize("channels, size", [(3, (10, 66, 80)), (2, (16, 72, 58))])
def test_fast_path_equals_the_plain_network(channels, size):
    """Odd-sized inputs whose SAME paddings are asymmetric in some layers and symmetric in
    others (e.g. H 66 -> 33 -> 17 -> 9 -> 5 -> 3; T 10 -> 5 -> 3 -> 2)."""
    net = random_i3d(channels, seed=channels)
    fast = fast_i3d(net)
    torch.manual_seed(2)
    x = torch.rand(2, channels, *size) * 2 - 1
    with torch.inference_mode():
        want, got = net.features(x), fast.features(x)
    assert want.abs().max() > 1e-3
    assert got.shape == want.shape and relative_difference(got, want) < 1e-4
    assert not torch.equal(got[0], got[1])


def test_fast_path_is_real_convolution_modules_for_hooks():
    """Both networks run every convolution through its nn.Conv3d module (57 of them before the
    logits); the fast one has no BatchNorm left and refuses training."""
    for net in (random_i3d(2), fast_i3d(random_i3d(2))):
        seen = []
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.Conv3d):
                m.register_forward_hook(lambda m, i, o, name=name: seen.append(name))
        with torch.no_grad():
            net.features(torch.zeros(1, 2, 4, 16, 16))
        assert len(seen) == len(set(seen)) == 57 and "Mixed_5c.b2b.conv3d" in seen
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    with pytest.raises(RuntimeError, match="inference only"):
        net.train()


def test_pytorch_i3d_argument_order():
    """InceptionI3d(num_classes=400, ..., in_channels=3), as pytorch-i3d's: a ported call
    InceptionI3d(400, in_channels=2) builds a 2-channel first layer; the second argument of
    pytorch-i3d's signature is not in_channels, so it must be passed by name."""
    net = InceptionI3d(157, in_channels=2)
    assert net.Conv3d_1a_7x7.conv3d.in_channels == 2 and net.logits.conv3d.out_channels == 157
    assert InceptionI3d().Conv3d_1a_7x7.conv3d.in_channels == 3
    with pytest.raises(TypeError):
        InceptionI3d(400, 2)


FAULT_PROBE = r"""
import platform, resource, sys
import torch
sys.path.insert(0, sys.argv[1])
from video.i3d import load_i3d

def faults(times):                 # page faults of writing a fresh 64 MiB tensor `times` times
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        torch.ones(16 * 2 ** 20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults(12)
default = faults(4)
load_i3d(sys.argv[2], in_channels=3)
faults(12)                         # the heap settles (freed blocks are kept and reused)
print(platform.libc_ver()[0], default, faults(4))
"""


def test_load_i3d_on_the_cpu_reuses_freed_memory(rgb_file):
    """After load_i3d (CPU), large tensors freed and allocated again cost no page faults
    (utils.retain_freed_memory); with glibc's default each one is mapped afresh (16,384
    faults per 64 MiB in 4 KiB pages, 32 in transparent huge pages). In a subprocess: the
    setting lasts for the whole process."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", FAULT_PROBE, root, rgb_file],
                         capture_output=True, text=True, check=True).stdout.split()
    libc, default, retained = out[0], int(out[1]), int(out[2])
    if libc != "glibc":
        pytest.skip(f"C library {libc or 'unknown'}: retain_freed_memory changes nothing there")
    assert default >= 4 * 32        # 4 x 64 MiB in 2 MiB huge pages at least
    assert retained <= 2
