"""tvl1.py against OpenCV's cv2.optflow.DualTVL1OpticalFlow on frames written here.

Frames: a smooth random texture (Gaussian-blurred noise at four scales) whose background moves
by a translation with a slight rotation and zoom while an elliptic textured object moves on its
own, and the same kind of texture shifted by a known sub-pixel amount. Non-square frames, so
that an x/y swap cannot pass. Agreement is end-point error (EPE, the mean over pixels of the
distance between the two flow vectors): the issue's bound is a mean of at most 0.03 px over
the pairs and no pair above 0.1 px.
"""
import numpy as np
import pytest
import torch

from video.tvl1 import DEFAULTS, TVL1Params, tvl1_flow, tvl1_flow_pairs

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "optflow"):
    pytest.skip("cv2.optflow (opencv-contrib) is not installed", allow_module_level=True)

SHIFT = (1.3, -0.6)  # x, y in pixels


def texture(rng, h, w):
    t = np.zeros((h, w), np.float32)
    for sigma, amp in ((1.0, 0.35), (2.5, 0.6), (6.0, 1.0), (15.0, 1.2)):
        n = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        t += amp * n / n.std()
    return t


def to_uint8(frames):
    lo, hi = min(f.min() for f in frames), max(f.max() for f in frames)
    return [np.clip((f - lo) / (hi - lo) * 255, 0, 255).round().astype(np.uint8) for f in frames]


def moving_pair(seed, h, w, pad=40):
    """Background: translation + rotation (<= 1.5 deg) + zoom (<= 2 %); one object translating."""
    rng = np.random.default_rng(seed)
    size = (w + 2 * pad, h + 2 * pad)
    bg, obj = texture(rng, size[1], size[0]), 1.3 * texture(rng, size[1], size[0])
    tx, ty, ox, oy = rng.uniform(-2.5, 2.5, 4)
    A = cv2.getRotationMatrix2D((w / 2 + pad, h / 2 + pad), rng.uniform(-1.5, 1.5), 1 + rng.uniform(-0.02, 0.02))
    A[:, 2] += (tx, ty)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ex, ey = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    rx, ry = rng.uniform(0.12, 0.22) * w, rng.uniform(0.12, 0.22) * h

    def mask(dx, dy):
        return 1 - np.clip((((xx - ex - dx) / rx) ** 2 + ((yy - ey - dy) / ry) ** 2 - 1) * 6, 0, 1)

    def crop(x):
        return x[pad:pad + h, pad:pad + w]

    b1 = crop(cv2.warpAffine(bg, A, size, flags=cv2.INTER_CUBIC))
    o1 = crop(cv2.warpAffine(obj, np.float32([[1, 0, ox], [0, 1, oy]]), size, flags=cv2.INTER_CUBIC))
    f0 = crop(bg) * (1 - mask(0, 0)) + crop(obj) * mask(0, 0)
    f1 = b1 * (1 - mask(ox, oy)) + o1 * mask(ox, oy)
    return to_uint8([f0, f1])


def shift_pair(seed, h, w, pad=20):
    """The texture's content moves by SHIFT (x, y) from the first frame to the second."""
    t = texture(np.random.default_rng(seed), h + 2 * pad, w + 2 * pad)
    M = np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]])
    f1 = cv2.warpAffine(t, M, t.shape[::-1], flags=cv2.INTER_CUBIC)
    return to_uint8([t[pad:pad + h, pad:pad + w], f1[pad:pad + h, pad:pad + w]])


def opencv_flow(pairs, **setters):
    out = []
    for a, b in pairs:
        tv = cv2.optflow.DualTVL1OpticalFlow_create()  # fresh: OpenCV's object keeps state
        for name, value in setters.items():
            getattr(tv, name)(value)
        out.append(tv.calc(a, b, None))
    return np.stack(out).transpose(0, 3, 1, 2)  # (N, 2, H, W), x then y


def torch_flow(pairs, **params):
    prev = torch.from_numpy(np.stack([a for a, _ in pairs]))
    nxt = torch.from_numpy(np.stack([b for _, b in pairs]))
    return tvl1_flow(prev, nxt, **params).numpy()


def epe(a, b):
    """Per-pair mean end-point error of (N, 2, H, W) flows."""
    return np.sqrt(((a - b) ** 2).sum(1)).mean((1, 2))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv_threads)


@pytest.fixture(scope="module")
def moving():
    """Moving-texture pairs at two non-square sizes, with OpenCV's default flow."""
    cases = []
    for h, w, seeds in ((64, 80, (0, 1, 2)), (96, 128, (3, 4))):
        pairs = [moving_pair(s, h, w) for s in seeds]
        cases.append((pairs, opencv_flow(pairs)))
    return cases


def test_defaults_are_opencvs():
    tv = cv2.optflow.DualTVL1OpticalFlow_create()
    assert DEFAULTS == TVL1Params(
        tau=tv.getTau(), lambda_=tv.getLambda(), theta=tv.getTheta(), nscales=tv.getScalesNumber(),
        warps=tv.getWarpingsNumber(), epsilon=tv.getEpsilon(), inner_iterations=tv.getInnerIterations(),
        outer_iterations=tv.getOuterIterations(), scale_step=tv.getScaleStep(), gamma=tv.getGamma(),
        median_filtering=tv.getMedianFiltering(), use_initial_flow=tv.getUseInitialFlow())


def test_moving_textures_match_opencv(moving):
    errors = []
    for pairs, ref in moving:
        ours = torch_flow(pairs)
        assert ours.shape == ref.shape and ours.dtype == np.float32
        errors.extend(epe(ours, ref))
    errors = np.array(errors)
    assert errors.mean() <= 0.03, errors
    assert errors.max() <= 0.1, errors
    # The bound is tight enough to see a changed default: OpenCV's own flow with epsilon 0.02
    # (instead of 0.01) is farther from its default flow than ours is.
    pairs, ref = moving[1]
    changed = epe(opencv_flow(pairs, setEpsilon=0.02), ref)
    assert changed.mean() > 2 * errors[-len(pairs):].mean(), (changed, errors)


def test_known_shift():
    pairs = [shift_pair(10, 96, 128), shift_pair(11, 64, 80)]
    for pair in pairs:
        ref = opencv_flow([pair])
        ours = torch_flow([pair])
        e = epe(ours, ref)[0]
        assert e <= 0.03, e
        # Against the true motion, away from the borders where content enters/leaves the frame.
        inner = ours[0, :, 8:-8, 8:-8].reshape(2, -1)
        truth = np.array(SHIFT, np.float32)[:, None]
        assert np.abs(np.median(inner, 1) - truth[:, 0]).max() < 0.02
        assert np.sqrt(((inner - truth) ** 2).sum(0)).mean() < 0.1



def test_float_frames_in_0_1_are_scaled_by_255_as_opencv_does():
    """Float frames (values in [0, 1], not multiples of 1/255): OpenCV's calc scales them by
    255 (convertTo); so does tvl1_flow. Unscaled, the data term would weigh 255 times less and
    the flow would be far off OpenCV's."""
    rng = np.random.default_rng(12)
    t = texture(rng, 96 + 40, 128 + 40)
    t = (t - t.min()) / (t.max() - t.min())
    M = np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]])
    moved = cv2.warpAffine(t, M, t.shape[::-1], flags=cv2.INTER_CUBIC)
    pair = (np.ascontiguousarray(t[20:-20, 20:-20]), np.ascontiguousarray(np.clip(moved, 0, 1)[20:-20, 20:-20]))
    assert pair[0].dtype == np.float32 and 0 <= pair[0].min() and pair[0].max() <= 1
    ref = opencv_flow([pair])
    ours = torch_flow([pair])
    assert epe(ours, ref)[0] <= 0.03
    inner = ref[0, :, 8:-8, 8:-8].reshape(2, -1)      # OpenCV itself finds the shift on these frames
    assert np.abs(np.median(inner, 1) - np.array(SHIFT)).max() < 0.05

def test_parameters_reach_the_solver():
    """Non-default parameters (several at once) still agree with OpenCV given the same ones."""
    pairs = [moving_pair(5, 64, 80)]
    ref = opencv_flow(pairs, setScalesNumber=3, setWarpingsNumber=3, setMedianFiltering=3,
                      setLambda=0.2, setInnerIterations=12, setOuterIterations=4, setScaleStep=0.7)
    ours = torch_flow(pairs, nscales=3, warps=3, median_filtering=3, lambda_=0.2,
                      inner_iterations=12, outer_iterations=4, scale_step=0.7)
    e = epe(ours, ref)[0]
    assert e <= 0.03
    assert epe(ref, opencv_flow(pairs))[0] > 10 * e  # and they do change the flow


def test_small_frames_shorten_the_pyramid():
    """30x44 frames: OpenCV stops the pyramid at the first level under 16 pixels (3 of 5)."""
    pairs = [moving_pair(7, 30, 44, pad=12)]
    assert epe(torch_flow(pairs), opencv_flow(pairs))[0] <= 0.03


def test_batched_equals_single(moving, monkeypatch):
    """Each pair stops at its own iterations: its flow does not depend on its batch. The path
    used on CUDA (stopping flags read every 4 iterations, masked updates) gives the same flow."""
    from video import tvl1

    pairs = moving[0][0][:2] + [shift_pair(12, 64, 80)]  # they stop at different iterations
    batched = torch_flow(pairs)
    for i, pair in enumerate(pairs):
        np.testing.assert_allclose(batched[i], torch_flow([pair])[0], rtol=0, atol=1e-5)
    monkeypatch.setitem(tvl1.SYNC_EVERY, "cpu", 4)
    used = []                                    # the sync_every each scale ran with: the patch is read
    one_scale = tvl1._one_scale

    def recording(I0, I1, u, p, sync_every):
        used.append(sync_every)
        return one_scale(I0, I1, u, p, sync_every)
    monkeypatch.setattr(tvl1, "_one_scale", recording)
    np.testing.assert_allclose(torch_flow(pairs), batched, rtol=0, atol=1e-5)
    assert used and set(used) == {4}


FEW = dict(warps=1, nscales=2, outer_iterations=2)  # fast settings where only the plumbing is tested


def test_single_pair_and_pairs_helper():
    video = torch.from_numpy(np.stack(moving_pair(6, 64, 80) + shift_pair(13, 64, 80)))
    blocks = list(tvl1_flow_pairs(video, batch_size=2, **FEW))
    assert [tuple(b.shape) for b in blocks] == [(2, 2, 64, 80), (1, 2, 64, 80)]
    whole = tvl1_flow(video[:-1], video[1:], **FEW)
    np.testing.assert_allclose(torch.cat(blocks).numpy(), whole.numpy(), rtol=0, atol=1e-5)
    one = tvl1_flow(video[0], video[1], **FEW)
    assert one.shape == (2, 64, 80)
    np.testing.assert_allclose(one.numpy(), whole[0].numpy(), rtol=0, atol=1e-5)


def test_median_filter_is_opencvs():
    """The min/max median network: sorting networks checked on every 0/1 input, the filter
    equal to cv2.medianBlur on float planes (ties included, borders replicated)."""
    import itertools

    from video.tvl1 import _SORT, _median

    for k, net in _SORT.items():
        for bits in itertools.product((0, 1), repeat=k):
            v = list(bits)
            for i, j in net:
                v[i], v[j] = min(v[i], v[j]), max(v[i], v[j])
            assert v == sorted(bits), (k, bits)
    gen = torch.Generator().manual_seed(0)
    for u in (torch.randn(2, 2, 19, 23, generator=gen), torch.randint(0, 3, (2, 2, 19, 23), generator=gen).float()):
        for k in (3, 5):
            ours = _median(u, k).numpy()
            for b in range(2):
                for c in range(2):
                    np.testing.assert_array_equal(ours[b, c], cv2.medianBlur(u[b, c].numpy(), k))


def test_warp_is_opencvs_remap():
    """The warp: cv2.remap INTER_CUBIC with a zero border, maps in and far out of the frame."""
    from video.tvl1 import _remap_cubic

    rng = np.random.default_rng(0)
    h, w = 37, 53
    img = (rng.random((2, 3, h, w)) * 255).astype(np.float32)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    for amp in (0.3, 3.0, 30.0):
        u = (rng.standard_normal((2, 2, h, w)) * amp).astype(np.float32)
        ours = _remap_cubic(torch.from_numpy(img), torch.from_numpy(u)).numpy()
        for b in range(2):
            for c in range(3):
                ref = cv2.remap(img[b, c], gx + u[b, 0], gy + u[b, 1], cv2.INTER_CUBIC)
                np.testing.assert_allclose(ours[b, c], ref, rtol=0, atol=1e-3)


def test_rejects_what_it_does_not_implement():
    a = torch.zeros(1, 32, 32, dtype=torch.uint8)
    with pytest.raises(NotImplementedError):
        tvl1_flow(a, a, gamma=0.1)
    with pytest.raises(TypeError):
        tvl1_flow(a, a, warp=3)
    with pytest.raises(ValueError):
        tvl1_flow(a, a[:, :16])
    with pytest.raises(ValueError):
        tvl1_flow(a, a, median_filtering=7)  # OpenCV's medianBlur on float: 3 or 5 only


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_and_opencv(moving):
    pairs, ref = moving[1]
    prev = torch.from_numpy(np.stack([a for a, _ in pairs])).cuda()
    nxt = torch.from_numpy(np.stack([b for _, b in pairs])).cuda()
    flow = tvl1_flow(prev, nxt)
    assert flow.device.type == "cuda" and flow.dtype == torch.float32
    errors = epe(flow.cpu().numpy(), ref)
    assert errors.mean() <= 0.03 and errors.max() <= 0.1, errors
