"""TV-L1 optical flow in PyTorch, batched, on any device: OpenCV's DualTVL1OpticalFlow.

What it implements
    The duality-based TV-L1 optical flow of Zach, Pock & Bischof ("A Duality Based Approach
    for Realtime TV-L1 Optical Flow", DAGM 2007) in the form of Sánchez, Meinhardt-Llopis &
    Facciolo ("TV-L1 Optical Flow Estimation", IPOL 2013), following OpenCV's implementation
    step by step (opencv_contrib ``modules/optflow/src/tvl1flow.cpp``, class
    ``OpticalFlowDual_TVL1``, CPU path; older copies in opencv ``modules/video/src``):

    - frames converted to float without scaling (0..255);
    - pyramid: each level is ``cv::resize(previous level, fx = fy = scaleStep, INTER_LINEAR)``
      (size rounded to nearest, source coordinate ``(d + 0.5) / scaleStep - 0.5``, edge
      clamped), stopping early at a level narrower or lower than 16 pixels; the flow starts at
      zero on the coarsest level and goes up with ``cv::resize(..., size of the finer level,
      INTER_LINEAR)`` times ``1 / scaleStep``;
    - per level: centered gradient of I1 (one-sided half differences on the borders), then
      ``warps`` times: remap of I1 and its gradient at x + u with bicubic interpolation
      (a = -0.75, pixels outside the image read 0: ``cv::remap`` INTER_CUBIC, BORDER_CONSTANT;
      here ``grid_sample`` in float64),
      ``rho_c = I1w - I1wx u1 - I1wy u2 - I0``, ``grad = I1wx^2 + I1wy^2``; up to
      ``outerIterations`` rounds of [5x5 median filter of u1 and u2 (replicated border),
      up to ``innerIterations`` iterations of: thresholding step (v), divergence of the dual
      variables (backward differences, zero before the first row/column), u = v + theta div p,
      forward gradient of u (zero on the last row/column), dual update
      p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)]; both loops stop as soon as the
      squared change of u summed over the image (computed every inner iteration, after the u
      update) is at most epsilon^2 * H * W. The dual variables are reset to zero at each
      level, not at each warp; the stopping error is reset at each warp.

    Batched: each pair has its own stopping state; a pair that has stopped is frozen (masked
    updates) while the others go on, so a pair's flow does not depend on the batch it is in.

Interface
    ``tvl1_flow(prev, next, **params)``: ``prev``, ``next`` uint8 tensors (B, H, W) (or (H, W)
    for one pair) of grayscale frames on any device -> float32 (B, 2, H, W) flow in pixels on
    that device, channel 0 = x (columns), channel 1 = y (rows): ``next[y + v, x + u] ~
    prev[y, x]``, the convention of ``cv2.optflow.DualTVL1OpticalFlow_create().calc(prev,
    next, None)``. ``params`` override ``TVL1Params`` (OpenCV's defaults; ``lambda_`` for
    lambda). ``tvl1_flow_pairs(frames, batch_size)`` runs consecutive frames through it in
    batches.

    Memory: the whole batch is held at once; the peak is at the finest level (pyramid,
    warped images, dual variables, iteration temporaries, the median network): measured on the
    CPU as 16-20 MB of peak resident memory per 224x224 pair (batch 8 and 16), i.e. linear in
    the batch. Bound it with ``tvl1_flow_pairs``'s ``batch_size``.

    Speed: on the CPU, one torch thread per call with small batches (4 pairs) is the fast
    way (the batch stays in the caches), and calls in parallel threads of one torch thread
    each do not stall when other processes share the cores, as one call on several torch
    threads does; video/flow.py runs this module that way. Reuse of freed memory
    (utils.retain_freed_memory, which the extractor turns on) avoids a page fault per fresh
    page of every large temporary. `scripts/benchmark.py --section flow` measures it; figures
    are in docs/benchmarks.md.

Known differences from OpenCV (opencv-contrib-python-headless 5.0.0, the reference the tests
compare with), and their measured size
    - Float rounding order differs: the stopping error is summed by a float32 reduction
      (OpenCV: sequentially in float), the thresholding step is written as a clamp of
      rho / grad to [-lambda theta, lambda theta] (the same three cases; OpenCV's "no step
      where grad <= FLT_EPSILON" differs only where |rho| <= lambda theta grad as well, by less
      than 2e-5 px), some products are fused, the warp is computed in float64. TV-L1 with a
      median filter amplifies rounding: this module's own float32 and float64 runs differ by
      up to 0.01 px mean end-point error on smooth moving textures and by ~0.02 px on frames
      with large saturated areas. Measured against OpenCV (mean end-point error per pair):
      moving textures 224x224 0.0001-0.0059 px (mean 0.0020 over 6 pairs), 96x128
      0.0000-0.0055 px; a known shift of (1.3, -0.6) px 0.0000 px at 224x224 (ours and
      OpenCV's are both 0.008-0.012 px from the true motion); a black letterbox 0.0001 px,
      sensor noise (sigma 3 grey levels) 0.0014 px, a (6.2, -3.7) px shift 0.0000 px, frames
      with large saturated areas 0.0075-0.0255 px. Changing one OpenCV default moves OpenCV's
      own flow on the 224x224 moving textures by 0.008 (median 3) to 0.018 px (epsilon 0.02)
      (the issue reports 0.03-0.05 px on real footage).
    - ``gamma != 0`` (illumination term) and ``useInitialFlow`` are not implemented (raise).
    - OpenCV's object lowers its own ``nscales`` for good when a call meets frames too small
      for the pyramid (a side effect on later calls); here every call decides for itself.
    - OpenCV 5's ``remap`` interpolates at the exact float coordinate (checked against
      cv2.remap); older OpenCV releases quantized remap coordinates to 1/32 pixel
      (INTER_TAB_SIZE), so flows from those releases differ a little more (not measured).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["TVL1Params", "DEFAULTS", "tvl1_flow", "tvl1_flow_pairs"]

FLT_MAX = 3.4028234663852886e38

# How often (in inner iterations) the host reads the per-pair stopping flags. On the CPU that
# read is free: every iteration, and a batch whose pairs are all running skips the masking. On
# an accelerator each read is a synchronisation: every few iterations, with masked updates in
# between (a pair that has stopped stays frozen), so the result is the same either way.
SYNC_EVERY = {"cpu": 1, "default": 4}


class TVL1Params(NamedTuple):
    """OpenCV's ``DualTVL1OpticalFlow`` parameters, with OpenCV's defaults."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5
    use_initial_flow: bool = False


DEFAULTS = TVL1Params()


def _params(params: TVL1Params | None, overrides: dict) -> TVL1Params:
    p = DEFAULTS if params is None else params
    if "lambda" in overrides:
        overrides = dict(overrides)
        overrides["lambda_"] = overrides.pop("lambda")
    unknown = set(overrides) - set(TVL1Params._fields)
    if unknown:
        raise TypeError(f"unknown TV-L1 parameter(s): {sorted(unknown)}")
    p = p._replace(**overrides)
    if p.gamma != 0:
        raise NotImplementedError("gamma != 0 (OpenCV's illumination term) is not implemented")
    if p.use_initial_flow:
        raise NotImplementedError("use_initial_flow is not implemented")
    if p.nscales < 1 or p.warps < 0 or p.inner_iterations < 0 or p.outer_iterations < 0:
        raise ValueError(f"invalid TV-L1 parameters: {p}")
    if not 0 < p.scale_step < 1 and p.nscales > 1:
        raise ValueError("scale_step must be in (0, 1)")
    if p.median_filtering > 1 and p.median_filtering not in _SORT:
        raise ValueError("median_filtering must be 1, 3 or 5 (OpenCV's medianBlur on float flows)")
    return p


# ----------------------------------------------------------------------------- resampling

def _f32(x: float) -> float:
    """x rounded to float32, as OpenCV's static_cast<float> of its double parameters."""
    return float(torch.tensor(x, dtype=torch.float32))


def _cv_round(x: float) -> int:
    """cvRound: nearest integer, halves to even (Python's round does the same)."""
    return int(round(x))


def _linear_taps(n_in: int, n_out: int, scale: float, device):
    """Source indices and weights of cv::resize INTER_LINEAR along one axis.

    ``scale`` is OpenCV's ``scale_x`` (source pixels per destination pixel)."""
    d = torch.arange(n_out, dtype=torch.float64)
    f = ((d + 0.5) * scale - 0.5).to(torch.float32)
    s = torch.floor(f)
    f = f - s
    s = s.long()
    low = s < 0
    f = torch.where(low, 0.0, f)
    s = torch.where(low, 0, s)
    high = s >= n_in - 1
    f = torch.where(high, 0.0, f)
    s = torch.where(high, n_in - 1, s)
    s1 = (s + 1).clamp(max=n_in - 1)
    return s.to(device), s1.to(device), (1 - f).to(device), f.to(device)


def _resize_linear(x: torch.Tensor, out_hw: tuple[int, int], scale_yx: tuple[float, float]) -> torch.Tensor:
    """cv::resize INTER_LINEAR of the last two dims (horizontal pass, then vertical)."""
    h, w = x.shape[-2:]
    oh, ow = out_hw
    a, b, wa, wb = _linear_taps(w, ow, scale_yx[1], x.device)
    t = x.index_select(-1, a) * wa + x.index_select(-1, b) * wb
    a, b, wa, wb = _linear_taps(h, oh, scale_yx[0], x.device)
    return wa[:, None] * t.index_select(-2, a) + wb[:, None] * t.index_select(-2, b)


def _remap_cubic(src: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """cv::remap(src, x + u1, y + u2, INTER_CUBIC, BORDER_CONSTANT 0) of (B, C, H, W) planes.

    OpenCV 5 samples at the exact float map point sum_ij wy_i wx_j src[floor(my) - 1 + i,
    floor(mx) - 1 + j] with the cubic weights of a = -0.75, neighbours outside the image
    counting 0: that is grid_sample's bicubic mode with zero padding, align_corners=True
    putting grid -1 / +1 on the first / last pixel centres. grid_sample runs in float64: the
    normalisation round trip of the coordinates costs up to ~1e-5 px in float32 at 224 pixels
    (~0.01 on 0..255 values), nothing in float64 (measured against cv2.remap: <= 1e-4)."""
    b, c, h, w = src.shape
    dev = src.device
    dtype = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
    mx = torch.arange(w, device=dev, dtype=torch.float32) + u[:, 0]  # OpenCV's map, in float
    my = torch.arange(h, device=dev, dtype=torch.float32)[:, None] + u[:, 1]
    grid = torch.stack([mx.to(dtype) * (2.0 / (w - 1)) - 1, my.to(dtype) * (2.0 / (h - 1)) - 1], -1)
    out = F.grid_sample(src.to(dtype), grid, mode="bicubic", padding_mode="zeros", align_corners=True)
    return out.to(torch.float32)


# ----------------------------------------------------------------------------- stencils

def _centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's centeredGradient: half central differences, half one-sided on the border."""
    p = F.pad(x[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dx = 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2])
    dy = 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])
    return dx, dy


# Sorting networks (verified on all 0/1 inputs in tests/test_tvl1.py) for the median filter.
_SORT = {3: ((0, 1), (1, 2), (0, 1)),
         5: ((0, 1), (3, 4), (2, 4), (2, 3), (1, 4), (0, 3), (0, 2), (1, 3), (1, 2))}


def _exchange(v: list, i: int, j: int) -> None:
    a, b = v[i], v[j]
    v[i], v[j] = torch.minimum(a, b), torch.maximum(a, b)


def _forgetful_median(values: list) -> torch.Tensor:
    """Elementwise median of an odd number of tensors by forgetful selection: keep n // 2 + 2,
    drop their minimum and maximum (neither can be the median), take in the next one, repeat."""
    n = len(values)
    kept, rest = list(values[:n // 2 + 2]), list(values[n // 2 + 2:])
    while len(kept) > 1:
        for i in range(1, len(kept)):
            _exchange(kept, 0, i)
        for i in range(1, len(kept) - 1):
            _exchange(kept, i, len(kept) - 1)
        kept = kept[1:-1]
        if rest:
            kept.append(rest.pop(0))
    return kept[0]


def _median(u: torch.Tensor, k: int) -> torch.Tensor:
    """cv::medianBlur(k) (k = 3 or 5, as OpenCV allows on float) of each (H, W) plane of u
    (B, C, H, W), border replicated; exact, with elementwise min/max only.

    Each k-tall column of the padded planes is sorted (shared by the k windows that contain
    it), then each rank row of a window is sorted across its k columns: rows and columns are
    then both sorted, so the entry (i, j) has at least (i + 1)(j + 1) - 1 entries below it and
    (k - i)(k - j) - 1 above. The entries that can be the median (rank m = (k^2 + 1) / 2) are
    those with (i + 1)(j + 1) <= m and (k - i)(k - j) <= m; the others fall as many below as
    above the median, which is therefore the median of the candidates (13 of 25 for k = 5)."""
    if k not in _SORT:
        raise ValueError(f"median_filtering must be 1, 3 or 5 (OpenCV's medianBlur on float), got {k}")
    h, w = u.shape[-2:]
    r = k // 2
    m = (k * k + 1) // 2
    p = F.pad(u, (r, r, r, r), mode="replicate")
    cols = [p[..., i:i + h, :] for i in range(k)]
    for i, j in _SORT[k]:
        _exchange(cols, i, j)
    candidates = []
    for i in range(k):
        row = [cols[i][..., j:j + w] for j in range(k)]
        for a, b in _SORT[k]:
            _exchange(row, a, b)
        candidates += [row[j] for j in range(k) if (i + 1) * (j + 1) <= m and (k - i) * (k - j) <= m]
    return _forgetful_median(candidates)


def _one_scale(I0, I1, u, p: TVL1Params, sync_every: int):
    """procOneScale for a batch: I0, I1 (B, H, W) float32, u (B, 2, H, W); returns the new u."""
    bsz, h, w = I0.shape
    scaled_eps = _f32(p.epsilon * p.epsilon * h * w)
    l_t = _f32(p.lambda_ * p.theta)
    taut = _f32(p.tau / p.theta)
    theta = _f32(p.theta)

    I1x, I1y = _centered_gradient(I1)
    planes = torch.stack([I1, I1x, I1y], 1)
    # Dual variables: px[:, c] / py[:, c] = x / y component of the dual of flow component c
    # (OpenCV's p11, p21 / p12, p22). px's last column and py's last row stay 0.
    px = torch.zeros_like(u)
    py = torch.zeros_like(u)

    for _ in range(p.warps):
        I1w, Ix, Iy = _remap_cubic(planes, u).unbind(1)
        grad = Ix * Ix + Iy * Iy
        rho_c = I1w - Ix * u[:, 0] - Iy * u[:, 1] - I0
        Ixy = torch.stack([Ix, Iy], 1)
        # Thresholding step as a clamp: coef = rho / grad clamped to [-l_t, l_t] is OpenCV's
        # three cases (rho < -l_t grad: v = u + l_t I; rho > l_t grad: v = u - l_t I; else
        # v = u - rho / grad I). Where grad == 0 the image gradient is 0 and so is the step;
        # OpenCV's "grad <= FLT_EPSILON -> no step" differs only where |rho| <= l_t grad too,
        # i.e. by less than l_t * sqrt(FLT_EPSILON) ~ 2e-5 px.
        grad_safe = grad.clamp_min(1e-30)

        error = torch.full((bsz,), FLT_MAX, device=I0.device)
        n = 0
        for _ in range(p.outer_iterations):
            active = error > scaled_eps
            if not bool(active.any()):
                break
            if p.median_filtering > 1:
                u = torch.where(active[:, None, None, None], _median(u, p.median_filtering), u)
            for _ in range(p.inner_iterations):
                active = error > scaled_eps
                every = bool(active.all()) if sync_every == 1 else False
                if not every and n % sync_every == 0 and not bool(active.any()):
                    break
                n += 1
                u_new, px_new, py_new, err = _iteration(u, px, py, Ix=Ix, Iy=Iy, Ixy=Ixy, rho_c=rho_c,
                                                         grad_safe=grad_safe, l_t=l_t, theta=theta, taut=taut)
                if every:
                    u, px, py, error = u_new, px_new, py_new, err
                else:
                    m = active[:, None, None, None]
                    u = torch.where(m, u_new, u)
                    px = torch.where(m, px_new, px)
                    py = torch.where(m, py_new, py)
                    error = torch.where(active, err, error)
    return u


def _iteration(u, px, py, *, Ix, Iy, Ixy, rho_c, grad_safe, l_t, theta, taut):
    """One inner iteration (estimateV, divergence, estimateU, forwardGradient,
    estimateDualVariables); returns new tensors (u, px, py) and each pair's squared change."""
    # thresholding step: v = u - coef * grad I1w, coef = clamp(rho / grad, -l_t, l_t)
    rho = Ix * u[:, 0]
    rho.addcmul_(Iy, u[:, 1]).add_(rho_c)
    coef = rho.div_(grad_safe).clamp_(-l_t, l_t)
    v = torch.addcmul(u, coef[:, None], Ixy, value=-1)
    # divergence of the dual variables: backward differences, zero outside the image
    div = torch.empty_like(u)
    div[..., 0] = px[..., 0]
    torch.sub(px[..., 1:], px[..., :-1], out=div[..., 1:])
    div[..., 0, :] += py[..., 0, :]
    div[..., 1:, :] += py[..., 1:, :] - py[..., :-1, :]
    # u = v + theta div p, and the squared change
    u_new = v.add_(div, alpha=theta)
    d = u_new - u
    err = d.mul_(d).sum((1, 2, 3))
    # forward gradient of u (zero on the last column / row) and the dual update
    gx = torch.empty_like(u)
    gy = torch.empty_like(u)
    gx[..., -1] = 0
    gy[..., -1, :] = 0
    torch.sub(u_new[..., 1:], u_new[..., :-1], out=gx[..., :-1])
    torch.sub(u_new[..., 1:, :], u_new[..., :-1, :], out=gy[..., :-1, :])
    ng = torch.hypot(gx, gy).mul_(taut).add_(1)
    px_new = torch.add(px, gx, alpha=taut).div_(ng)
    py_new = torch.add(py, gy, alpha=taut).div_(ng)
    return u_new, px_new, py_new, err


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    """OpenCV's convertTo: 8-bit frames as they are (0..255), float frames times 255."""
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32)
    if frames.is_floating_point():
        return frames.to(torch.float32) * 255
    raise TypeError(f"frames must be uint8 or floating point, got {frames.dtype}")


def tvl1_flow(prev: torch.Tensor, next: torch.Tensor, params: TVL1Params | None = None,
              **overrides) -> torch.Tensor:
    """TV-L1 flow from ``prev`` to ``next``, OpenCV's ``DualTVL1OpticalFlow`` in PyTorch.

    ``prev``, ``next``: uint8 (B, H, W) or (H, W) grayscale frames on one device (floating
    point frames are taken in 0..1 and scaled by 255, as OpenCV does). Returns float32
    (B, 2, H, W) (or (2, H, W)) on that device, channel 0 = x displacement, channel 1 = y
    displacement, in pixels. Parameters: ``params`` (a ``TVL1Params``) and/or keyword
    overrides of its fields (``lambda_`` or ``lambda``). Memory grows linearly with B (see the
    module docstring); ``tvl1_flow_pairs`` bounds it for a long list of frames."""
    p = _params(params, overrides)
    if prev.shape != next.shape:
        raise ValueError(f"frame shapes differ: {tuple(prev.shape)} vs {tuple(next.shape)}")
    single = prev.dim() == 2
    if single:
        prev, next = prev[None], next[None]
    if prev.dim() != 3:
        raise ValueError(f"expected (B, H, W) or (H, W) frames, got {tuple(prev.shape)}")
    bsz, h, w = prev.shape
    if h < 3 or w < 3:
        raise ValueError("frames must be at least 3x3")
    dev = prev.device
    if bsz == 0:
        return torch.zeros(0, 2, h, w, device=dev)
    sync_every = SYNC_EVERY.get(dev.type, SYNC_EVERY["default"])

    I0s = [_to_float(prev)]
    I1s = [_to_float(next)]
    for _ in range(1, p.nscales):
        ph, pw = I0s[-1].shape[-2:]
        oh, ow = _cv_round(ph * p.scale_step), _cv_round(pw * p.scale_step)
        if ow < 16 or oh < 16:
            break
        s = 1.0 / p.scale_step
        I0s.append(_resize_linear(I0s[-1], (oh, ow), (s, s)))
        I1s.append(_resize_linear(I1s[-1], (oh, ow), (s, s)))

    u = torch.zeros(bsz, 2, *I0s[-1].shape[-2:], device=dev)
    up = _f32(1.0 / p.scale_step)
    for s in range(len(I0s) - 1, -1, -1):
        u = _one_scale(I0s[s], I1s[s], u, p, sync_every)
        if s == 0:
            break
        (ch, cw), (fh, fw) = u.shape[-2:], I0s[s - 1].shape[-2:]
        u = _resize_linear(u, (fh, fw), (1.0 / (fh / ch), 1.0 / (fw / cw))) * up
    return u[0] if single else u


def tvl1_flow_pairs(frames: torch.Tensor, batch_size: int = 8, **params) -> Iterator[torch.Tensor]:
    """Flow between consecutive frames of ``frames`` (N, H, W) uint8, ``batch_size`` pairs at a time.

    Yields float32 (b, 2, H, W) blocks (b <= batch_size) in order, N - 1 fields in all, on the
    frames' device; memory is bounded by ``batch_size`` (see the module docstring)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    for start in range(0, len(frames) - 1, batch_size):
        stop = min(start + batch_size, len(frames) - 1)
        yield tvl1_flow(frames[start:stop], frames[start + 1:stop + 1], **params)
