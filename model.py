"""BaS-Net: Background Suppression Network (Lee, Uh, Byun, AAAI 2020).

The layers and their parameter names follow the authors' release exactly, so a
state_dict saved by their code loads here with strict key matching:

    filter_module.conv_1.0   Conv1d(F, 512, 1)       + LeakyReLU
    filter_module.conv_2.0   Conv1d(512, 1, 1)       + Sigmoid      -> foreground weights W
    cas_module.conv_1.0      Conv1d(F, H, 3, pad 1)  + LeakyReLU
    cas_module.conv_2.0      Conv1d(H, H, 3, pad 1)  + LeakyReLU
    cas_module.conv_3.0      Dropout(0.7), Conv1d(H, C+1, 1, no bias) -> CAS

Two branches share the CAS module: the base branch sees the features X, the
suppression branch sees X * W. A video's class scores are the mean of the top-k
CAS values over time (k = T // r), turned into probabilities by a softmax.

The ablation variants of the paper's Table 2 are the same network with parts removed:
    basnet     both branches, background class (the full model)
    baseline   base branch only, no background class (plain MIL)
    base_bg    base branch only, with the background class
    supp_only  filter + suppression branch only, with the background class
"""
import torch
import torch.nn as nn

VARIANTS = ("basnet", "baseline", "base_bg", "supp_only")
FILTER_WIDTH = 512  # fixed in the release


def variant_parts(variant):
    """(has_base_branch, has_supp_branch, has_background_class) of an ablation variant."""
    return {
        "basnet": (True, True, True),
        "baseline": (True, False, False),
        "base_bg": (True, False, True),
        "supp_only": (False, True, True),
    }[variant]


class FilterModule(nn.Module):
    """Foreground weight per time step, in [0, 1]."""

    def __init__(self, feature_dim):
        super().__init__()
        self.conv_1 = nn.Sequential(nn.Conv1d(feature_dim, FILTER_WIDTH, 1), nn.LeakyReLU())
        self.conv_2 = nn.Sequential(nn.Conv1d(FILTER_WIDTH, 1, 1), nn.Sigmoid())

    def forward(self, x):  # x: (B, F, T) -> (B, 1, T)
        return self.conv_2(self.conv_1(x))


class CASModule(nn.Module):
    """Class activation sequence: one logit per class (and background) per time step."""

    def __init__(self, feature_dim, num_outputs, hidden_dim=2048, dropout=0.7):
        super().__init__()
        self.conv_1 = nn.Sequential(nn.Conv1d(feature_dim, hidden_dim, 3, padding=1), nn.LeakyReLU())
        self.conv_2 = nn.Sequential(nn.Conv1d(hidden_dim, hidden_dim, 3, padding=1), nn.LeakyReLU())
        self.drop_out = nn.Dropout(dropout)
        self.conv_3 = nn.Sequential(nn.Conv1d(hidden_dim, num_outputs, 1, bias=False))

    def forward(self, x):  # x: (B, F, T) -> (B, T, num_outputs)
        out = self.conv_2(self.conv_1(x))
        return self.conv_3(self.drop_out(out)).transpose(1, 2)


class BaSNet(nn.Module):
    def __init__(self, feature_dim, num_classes, num_segments, *, r=8, hidden_dim=2048,
                 dropout=0.7, variant="basnet"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
        self.variant = variant
        self.has_base, self.has_supp, self.has_background = variant_parts(variant)
        self.num_classes = num_classes
        self.k = max(1, num_segments // r)
        num_outputs = num_classes + 1 if self.has_background else num_classes
        if self.has_supp:
            self.filter_module = FilterModule(feature_dim)
        self.cas_module = CASModule(feature_dim, num_outputs, hidden_dim, dropout)
        self.softmax = nn.Softmax(dim=1)

    def video_scores(self, cas):
        """Softmax over classes of the mean of the top-k CAS values over time."""
        k = min(self.k, cas.shape[1])
        return self.softmax(torch.topk(cas, k, dim=1)[0].mean(dim=1))

    def forward(self, x, branches=("base", "supp")):
        """x: (B, T, F) features. Returns a dict with, for each branch the variant has (and
        `branches` asks for), `score_*` (B, C[+1]) video probabilities and `cas_*`
        (B, T, C[+1]) logits, and `fore_weights` (B, T, 1) with the suppression branch."""
        x = x.transpose(1, 2)
        out = {}
        if self.has_base and "base" in branches:
            out["cas_base"] = self.cas_module(x)
            out["score_base"] = self.video_scores(out["cas_base"])
        if self.has_supp and "supp" in branches:
            weights = self.filter_module(x)
            out["fore_weights"] = weights.transpose(1, 2)
            # a second call of the CAS module: its own dropout mask, as in the release
            out["cas_supp"] = self.cas_module(x * weights)
            out["score_supp"] = self.video_scores(out["cas_supp"])
        return out

    @property
    def localization_branch(self):
        """The branch whose CAS localizes actions: suppression when present, else base."""
        return "supp" if self.has_supp else "base"
