"""Sampling and the CAS -> proposals -> NMS path on hand-built inputs."""

import numpy as np
import pytest

from dataset import sample_test_indices, sample_train_indices
from postprocess import Localization, localize_video, minmax_norm, nms, proposals, upsample


def release_probabilities(L, T):
    """P(index of position i = j), (T, L), read off the release's random_perturb: float
    positions i * L / T truncated with int(), bin i < T - 1 uniform over int(s_i) ..
    int(s_{i+1}) inclusive, the last bin over int(s_{T-1}) .. L - 1; L == T takes all."""
    if L == T:
        return np.eye(T)
    s = np.arange(T) * L / T
    P = np.zeros((T, L))
    for i in range(T):
        lo = int(s[i])
        hi = int(s[i + 1]) if i < T - 1 else max(lo, L - 1)
        P[i, lo:hi + 1] = 1 / (hi - lo + 1)
    return P


def jitter_probabilities(L, T):
    """P(floor((i + u) L / T) = j): the overlap of bin i with segment j, relative to the bin."""
    P = np.zeros((T, L))
    for i in range(T):
        a, b = i * L / T, (i + 1) * L / T
        for j in range(int(a), min(L, int(np.ceil(b)))):
            P[i, j] = (min(b, j + 1) - max(a, j)) / (b - a)
    return P


def frequencies(L, T, sampling, draws, seed=0):
    rng = np.random.default_rng(seed)
    counts = np.zeros((T, L))
    for _ in range(draws):
        counts[np.arange(T), sample_train_indices(L, T, rng, sampling)] += 1
    return counts / draws


@pytest.mark.parametrize("L,T", [(7, 20), (13, 5), (20, 7), (31, 8), (3, 3)])
def test_release_sampling_matches_the_release_per_position(L, T):
    draws = 6000
    freq, P = frequencies(L, T, "release", draws), release_probabilities(L, T)
    assert ((freq > 0) <= (P > 0)).all()          # never an index the release cannot draw
    # each cell is a binomial frequency: 5 standard deviations
    assert (np.abs(freq - P) <= 5 * np.sqrt(P * (1 - P) / draws) + 1e-12).all()


def test_release_sampling_probabilities_by_hand():
    # L = 3, T = 4: s = 0, .75, 1.5, 2.25 -> bins {0}, {0, 1}, {1, 2}, last {2} (L - 1 = 2)
    P = release_probabilities(3, 4)
    np.testing.assert_allclose(P, [[1, 0, 0], [.5, .5, 0], [0, .5, .5], [0, 0, 1]])
    # L = 5, T = 2: s = 0, 2.5 -> {0, 1, 2}, last {2, 3, 4}: the shared index 2 may repeat
    np.testing.assert_allclose(release_probabilities(5, 2), [[1 / 3] * 3 + [0, 0], [0, 0] + [1 / 3] * 3])
    freq = frequencies(5, 2, "release", 3000)
    assert np.abs(freq - release_probabilities(5, 2)).max() < 0.05


@pytest.mark.parametrize("L", [200, 328, 500, 749])
def test_release_sampling_varies_for_videos_shorter_than_T(L):
    rng = np.random.default_rng(0)
    draws = {tuple(sample_train_indices(L, 750, rng, "release")) for _ in range(20)}
    assert len(draws) == 20                      # a new index vector every time
    a, b = (sample_train_indices(L, 750, rng, "release") for _ in range(2))
    assert 0.05 < np.mean(a != b) < 0.6          # the release's 13-50 % of positions


@pytest.mark.parametrize("L,T", [(1000, 750), (751, 750), (750, 750), (7, 3)])
def test_stratified_sampling_one_index_in_each_bin_without_repeats(L, T):
    rng = np.random.default_rng(0)
    bins = np.arange(T)
    for _ in range(20):
        idx = sample_train_indices(L, T, rng, "stratified")
        assert (idx * T >= bins * L).all() and (idx * T < (bins + 1) * L).all()
        assert (np.diff(idx) > 0).all()           # never the same segment twice


@pytest.mark.parametrize("L,T", [(7, 20), (300, 750)])
def test_stratified_sampling_of_short_videos_is_the_jittered_position(L, T):
    draws = 3000
    freq, P = frequencies(L, T, "stratified", draws), jitter_probabilities(L, T)
    assert ((freq > 0) <= (P > 0)).all()
    assert (np.abs(freq - P) <= 5 * np.sqrt(P * (1 - P) / draws) + 1e-12).all()


def test_train_sampling_covers_the_video():
    rng = np.random.default_rng(0)
    for sampling in ("release", "stratified"):
        seen = np.zeros(10, dtype=int)
        for _ in range(200):
            seen[sample_train_indices(10, 4, rng, sampling)] += 1
        assert (seen > 0).all(), sampling         # every segment can be drawn


def test_test_sampling_is_uniform_floor():
    assert sample_test_indices(10, 4).tolist() == [0, 2, 5, 7]
    assert sample_test_indices(2, 5).tolist() == [0, 0, 0, 1, 1]


def test_minmax_norm_clips_at_zero_and_handles_flat():
    cas = np.array([[2.0, -1.0, 3.0], [4.0, -3.0, 3.0], [0.0, -2.0, 3.0]])
    out = minmax_norm(cas)
    np.testing.assert_allclose(out[:, 0], [0.5, 1.0, 0.0])      # min 0, max 4
    np.testing.assert_allclose(out[:, 1], [-1.0, -3.0, -2.0])   # max, min clipped to 0 -> range 1
    np.testing.assert_allclose(out[:, 2], [0.0, 0.0, 0.0])      # flat: (3 - 3) / 1


def test_upsample_linear_with_extrapolation():
    cas = np.array([[0.0], [1.0], [3.0]])
    out = upsample(cas, 2)[:, 0]
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0, 2.0, 3.0, 4.0])  # last point extrapolated


def test_proposals_hand_computed():
    # curve of 10 points; thresholds 0 and 0.5
    curve = np.array([0.0, 0.2, 0.6, 0.8, 0.6, 0.0, 0.0, 0.9, 0.4, 0.0])
    s, e, score = proposals(curve, [0.0, 0.5], class_score=0.5, seconds_per_point=0.1, lam=0.25, gamma=0.2)
    # theta 0: runs [1, 4] (n 4) and [7, 8] (n 2)
    #   [1,4]: inner 2.2/4 = 0.55; outer [max(0,int(0)), 0] + [5, int(5.0)=5] -> points 0, 5 -> 0
    #   [7,8]: inner 0.65; outer [int(6.5)=6, 6] + [9, min(9, int(8.5)=8)] -> point 6 only -> 0
    # theta 0.5: curve becomes [0,0,.6,.8,.6,0,0,.9,0,0]: runs [2,4] (n 3) and [7,7] (n 1)
    #   [2,4]: inner 2/3; outer [int(1.25)=1, 1] + [5, int(4.75)=4] -> point 1 (zeroed) -> 0
    #   [7,7]: inner 0.9; outer [int(6.75)=6, 6] + [8, int(7.25)=7] -> point 6 -> 0
    np.testing.assert_allclose(s, [0.1, 0.7, 0.2, 0.7])
    np.testing.assert_allclose(e, [0.5, 0.9, 0.5, 0.8])
    np.testing.assert_allclose(score, np.array([0.55, 0.65, 2 / 3, 0.9]) + 0.1)


def test_proposals_outer_band_uses_thresholded_curve():
    curve = np.array([0.3, 0.3, 0.3, 0.3, 1.0, 1.0, 1.0, 1.0, 0.3, 0.3, 0.3, 0.3])
    s, e, score = proposals(curve, [0.5], class_score=0.0, seconds_per_point=1.0)
    # run [4, 7], n 4: outer band points 3 and 8, zeroed below 0.5 -> outer mean 0
    assert s.tolist() == [4.0] and e.tolist() == [8.0]
    assert score[0] == pytest.approx(1.0)
    s, e, score = proposals(curve, [0.2], class_score=0.0, seconds_per_point=1.0)
    # theta 0.2 keeps everything: one run over the whole curve, empty outer band
    assert s.tolist() == [0.0] and e.tolist() == [12.0] and score[0] == pytest.approx(6.4 / 12)


def test_nms_with_correct_iou():
    starts = np.array([0.0, 1.0, 0.0, 10.0, 0.5])
    ends = np.array([10.0, 10.0, 8.0, 12.0, 9.5])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.8])
    # IoU([0,10],[1,10]) = 0.9 > 0.7 -> out; IoU([0,10],[0,8]) = 0.8 -> out;
    # IoU([0,10],[0.5,9.5]) = 0.9 -> out; [10,12] does not overlap -> kept
    assert nms(starts, ends, scores, 0.7).tolist() == [0, 3]
    # at 0.85 only IoU 0.9 is suppressed: [0,8] stays (0.8), and [1,10] vs [0.5,9.5] = 8.5/9.5 -> out
    assert nms(starts, ends, scores, 0.85).tolist() == [0, 2, 3]


def test_nms_suppresses_at_exactly_the_threshold():
    # IoU([0,10],[0,8]) = 0.8 exactly (binary fractions): >= 0.8 suppresses, as the release
    starts, ends, scores = np.array([0.0, 0.0]), np.array([10.0, 8.0]), np.array([0.9, 0.5])
    assert nms(starts, ends, scores, 0.8).tolist() == [0]
    assert nms(starts, ends, scores, 0.8 + 1e-9).tolist() == [0, 1]
    # IoU([0,4],[2,6]) = 2 / 6 = 1/3: computed the same way as the threshold 1/3
    starts, ends = np.array([0.0, 2.0]), np.array([4.0, 6.0])
    assert nms(starts, ends, scores, 1 / 3).tolist() == [0]
    # threshold 0: any overlap, however small, suppresses; disjoint segments do not
    starts, ends = np.array([0.0, 3.9, 4.0]), np.array([4.0, 8.0, 9.0])
    assert nms(starts, ends, np.array([0.9, 0.8, 0.7]), 0.0).tolist() == [0]


PARAMS = Localization(class_th=0.25, act_thresh=(0.0, 0.5), scale=1, nms_thresh=0.7, lambda_oic=0.25, gamma_oic=0.2)


def test_localize_video_times_classes_and_fallback():
    T = 8
    cas = np.full((T, 2), -1.0)
    cas[2:5, 0] = 2.0                      # class 0 active on segments 2..4
    probs = np.array([0.6, 0.1])
    out, predicted = localize_video(cas, probs, ["A", "B"], num_real_segments=16, params=PARAMS,
                                    seconds_per_segment=16 / 25)
    assert predicted.tolist() == [0]
    # normalised: 1 on 2..4, -0.5 elsewhere -> one run [2, 4] at both thresholds, NMS keeps one;
    # each point stands for 16 * 16 / (1 * 8 * 25) = 1.28 s
    assert len(out) == 1 and out[0]["label"] == "A"
    assert out[0]["segment"] == pytest.approx([2 * 1.28, 5 * 1.28])
    assert out[0]["score"] == pytest.approx(1.0 + 0.2 * 0.6)   # the raw probability, not 1
    # no class passes 0.25: the top class is used
    out, predicted = localize_video(cas, np.array([0.2, 0.1]), ["A", "B"], num_real_segments=16, params=PARAMS,
                                    seconds_per_segment=16 / 25)
    assert predicted.tolist() == [0] and out[0]["score"] == pytest.approx(1.0 + 0.2 * 0.2)
    # class index 0 alone is localized (the release's `pred.any()` skipped it)
    out, _ = localize_video(cas, np.array([0.9, 0.0]), ["A", "B"], num_real_segments=16, params=PARAMS,
                            seconds_per_segment=16 / 25)
    assert len(out) == 1
