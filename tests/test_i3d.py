"""i3d.py: the pytorch-i3d layout (every key and shape of rgb_imagenet.pt / flow_imagenet.pt,
listed in tests/data/pytorch_i3d_state_dict.json), strict loading, TF "SAME" padding and
the feature output. Random weights stand in for the published ones."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from i3d import InceptionI3d, Unit3D, WeightsError, load_i3d, same_padding

LAYOUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pytorch_i3d_state_dict.json")


def random_i3d(in_channels, seed=0, num_classes=400):
    """An InceptionI3d with random weights and BatchNorm statistics (as a trained file has)."""
    torch.manual_seed(seed)
    net = InceptionI3d(num_classes, in_channels=in_channels)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(1000)
    return net.eval()


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
        loaded = load_i3d(path, in_channels=2, device="cpu")
        assert not loaded.training
        for k, v in loaded.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                assert torch.equal(v, state[k]), k


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


def test_features_are_the_final_average_pool_at_224(rgb_file):
    """A 16 x 224 x 224 snippet: Mixed_5c is 2 x 7 x 7 and the [2, 7, 7] pool gives one vector."""
    net = load_i3d(rgb_file, 3)
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.inference_mode():
        trunk = net.trunk(x)
        assert trunk.shape == (1, 1024, 2, 7, 7)
        pooled = F.avg_pool3d(trunk, (2, 7, 7), stride=1)
        assert pooled.shape == (1, 1024, 1, 1, 1)
        feats = net.features(x)
        torch.testing.assert_close(feats, pooled.flatten(1), rtol=1e-5, atol=1e-6)
        assert feats.abs().max() > 1e-3    # not a degenerate network
        assert net.logits(pooled).flatten(1).shape == (1, 400)


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
