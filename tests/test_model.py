"""The network and the loss against the release's shapes and formulas."""
import math

import pytest
import torch

from model import BaSNet
from train import branch_loss, compute_loss

RELEASE_KEYS = {
    "filter_module.conv_1.0.weight": (512, 2048, 1), "filter_module.conv_1.0.bias": (512,),
    "filter_module.conv_2.0.weight": (1, 512, 1), "filter_module.conv_2.0.bias": (1,),
    "cas_module.conv_1.0.weight": (2048, 2048, 3), "cas_module.conv_1.0.bias": (2048,),
    "cas_module.conv_2.0.weight": (2048, 2048, 3), "cas_module.conv_2.0.bias": (2048,),
    "cas_module.conv_3.0.weight": (21, 2048, 1),
}


def test_release_architecture_keys_shapes_and_size():
    model = BaSNet(2048, 20, 750)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == RELEASE_KEYS
    assert sum(p.numel() for p in model.parameters()) == 26_262_529
    assert model.k == 93


def test_forward_shapes_topk_mean_and_shared_cas():
    torch.manual_seed(0)
    model = BaSNet(6, 3, 16, r=4, hidden_dim=8, dropout=0.0).eval()
    x = torch.randn(2, 16, 6)
    out = model(x)
    assert out["cas_base"].shape == (2, 16, 4) and out["fore_weights"].shape == (2, 16, 1)
    # video score = softmax of the mean of the top k = 16 // 4 = 4 CAS values per class
    top = out["cas_base"].sort(dim=1, descending=True)[0][:, :4].mean(dim=1)
    torch.testing.assert_close(out["score_base"], torch.softmax(top, dim=1))
    # the suppression branch is the same CAS module applied to X * W
    w = out["fore_weights"]
    torch.testing.assert_close(out["cas_supp"], model.cas_module((x * w).transpose(1, 2)))
    assert ((w >= 0) & (w <= 1)).all()


@pytest.mark.parametrize("variant,keys,outputs", [
    ("baseline", {"cas_base", "score_base"}, 3),
    ("base_bg", {"cas_base", "score_base"}, 4),
    ("supp_only", {"cas_supp", "score_supp", "fore_weights"}, 4),
])
def test_variants(variant, keys, outputs):
    model = BaSNet(6, 3, 16, hidden_dim=8, variant=variant)
    out = model(torch.randn(1, 16, 6))
    assert set(out) == keys
    assert next(v for k, v in out.items() if k.startswith("cas")).shape[-1] == outputs


def bce(p, t):
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_loss_matches_release_formula_by_hand():
    # one video with labels {0, 2} of C = 3
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    p_base = torch.tensor([[0.3, 0.1, 0.2, 0.4]])
    p_supp = torch.tensor([[0.5, 0.1, 0.3, 0.1]])
    w = torch.tensor([[[0.5], [1.0], [0.25]]])
    t_base = [1 / 3, 0, 1 / 3, 1 / 3]   # [y, 1] / (|y| + 1)
    t_supp = [1 / 2, 0, 1 / 2, 0]       # [y, 0] / |y|
    want_base = sum(bce(p, t) for p, t in zip(p_base[0].tolist(), t_base)) / 4
    want_supp = sum(bce(p, t) for p, t in zip(p_supp[0].tolist(), t_supp)) / 4
    losses = compute_loss({"score_base": p_base, "score_supp": p_supp, "fore_weights": w}, labels, alpha=1e-4)
    assert losses["loss_base"].item() == pytest.approx(want_base, rel=1e-6)
    assert losses["loss_supp"].item() == pytest.approx(want_supp, rel=1e-6)
    assert losses["loss_norm"].item() == pytest.approx(1.75)
    assert losses["loss_total"].item() == pytest.approx(want_base + want_supp + 1e-4 * 1.75, rel=1e-6)


def test_plain_mil_loss_has_no_background_target():
    labels = torch.tensor([[0.0, 1.0]])
    p = torch.tensor([[0.25, 0.75]])
    want = (bce(0.25, 0.0) + bce(0.75, 1.0)) / 2
    assert branch_loss(p, labels, background=False).item() == pytest.approx(want, rel=1e-6)


def test_base_loss_does_not_reach_the_filter():
    torch.manual_seed(0)
    model = BaSNet(6, 3, 16, hidden_dim=8)
    out = model(torch.randn(2, 16, 6))
    compute_loss(out, torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]]), 1e-4)["loss_base"].backward()
    assert all(p.grad is None for p in model.filter_module.parameters())
