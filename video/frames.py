"""Decoding a video into the 16-frame snippets of the I3D recipe: 25 fps, resize, centre crop.

The recipe (Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017, and the
README of deepmind/kinetics-i3d):
- Decoding: OpenCV (its bundled FFmpeg), frame by frame; at most a few snippets are held,
  so memory does not grow with the length of the video.
- 25 fps by nearest-frame timestamp selection: output frame k (time k / 25 s) is the
  source frame on screen at that time, source frame i = floor(k * fps / 25), frame i being
  shown during [i / fps, (i + 1) / fps). A video of N frames at `fps` gives
  ceil(N * 25 / fps) frames (frames are repeated below 25 fps, dropped above). The rate is
  the container's nominal one: a variable-frame-rate video is treated as constant-rate.
- Non-overlapping 16-frame snippets; snippet l covers [16 l / 25, 16 (l + 1) / 25) s. The
  tail shorter than 16 frames is dropped, so L = (frames at 25 fps) // 16; a video with
  fewer than 16 frames at 25 fps has no snippet (VideoTooShort).
- Each frame: shorter side resized to 256 (bilinear), centre crop 224 x 224, RGB order
  (OpenCV decodes BGR), values x / 255 * 2 - 1 in [-1, 1] (rgb_input).
- Each snippet also carries the grayscale frames its flow is computed from (snippets()):
  the crops, or with flow_before_crop the resized frames (video/flow.py crops the fields).
"""
import math
import os
from fractions import Fraction

import cv2
import numpy as np
import torch

from dataset import FEATURE_FPS, SNIPPET_FRAMES
from utils import UserError

FPS, SNIPPET = FEATURE_FPS, SNIPPET_FRAMES


class VideoError(UserError):
    """A video file cannot be turned into features; the message names the file."""


class VideoTooShort(VideoError):
    """The video has fewer than 16 frames at 25 fps: not one snippet."""


def open_video(path):
    """(capture, fps as a Fraction, frame count or None) of a video file."""
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file")
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: cannot be opened as a video (unreadable or corrupt)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        cap.release()
        raise VideoError(f"{path}: the container gives no usable frame rate ({fps})")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    # 1001 covers the NTSC rates (30000/1001 = 29.97, 24000/1001, 60000/1001)
    return cap, Fraction(fps).limit_denominator(1001), count if count > 0 else None


def frames_at(num_frames, fps, rate=FPS):
    """Number of frames at `rate` fps of a video of num_frames frames at `fps` (the frames
    k with k / rate inside the video's duration num_frames / fps)."""
    fps = Fraction(fps).limit_denominator(1001)
    return math.ceil(num_frames * rate / fps)


def resampled_frames(cap, fps, rate=FPS):
    """BGR frames of an open capture at `rate` fps: the source frame on screen at each time
    k / rate (see the module docstring). Frames never shown are only grabbed (decoded,
    not converted to a BGR image)."""
    k = 0                      # next output frame
    i = 0                      # current source frame
    while cap.grab():
        # output frames k with k / rate in [i / fps, (i + 1) / fps)
        n = 0
        while k * fps < (i + 1) * rate:
            k += 1
            n += 1
        if n:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                return
            for _ in range(n):
                yield frame
        i += 1


def resize_shorter(frame, resize):
    """The frame with its shorter side scaled to `resize` (bilinear), aspect kept."""
    h, w = frame.shape[:2]
    if min(h, w) == resize:
        return frame
    scale = resize / min(h, w)
    size = (round(w * scale), round(h * scale))        # cv2.resize takes (width, height)
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def centre_box(height, width, crop):
    """(rows, columns) slices of the centre crop x crop square of a height x width image."""
    top, left = (height - crop) // 2, (width - crop) // 2
    return slice(top, top + crop), slice(left, left + crop)


def resize_crop(frame, resize=256, crop=224):
    """Shorter side to `resize` (bilinear), then the centre crop x crop square."""
    frame = resize_shorter(frame, resize)
    rows, cols = centre_box(*frame.shape[:2], crop)
    return frame[rows, cols]


def prepare_frame(frame, resize=256, crop=224, flow_before_crop=False):
    """(rgb, gray) of a BGR frame: rgb the centre crop of the resized frame in RGB order;
    gray what the flow is computed from, the grayscale crop, or with flow_before_crop the
    grayscale resized frame."""
    resized = resize_shorter(frame, resize)
    rgb = cv2.cvtColor(resized[centre_box(*resized.shape[:2], crop)], cv2.COLOR_BGR2RGB)
    # the contiguous RGB crop: the same gray levels as the BGR crop, without OpenCV's copy of a view
    return rgb, cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY) if flow_before_crop else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def snippets(path, resize=256, crop=224, flow_before_crop=False, info=None):
    """Yield (rgb, gray) of each 16-frame snippet of a video at 25 fps: rgb (16, crop, crop,
    3) uint8 in RGB order; gray (17, h, w) uint8, the grayscale frames its 16 flow fields
    are computed from: its own 16 and the next frame (the next snippet's first, or the first
    of the dropped tail), or (16, h, w) for the video's last snippet when no frame follows.
    h x w is crop x crop, or the resized frame with flow_before_crop. Raises VideoError when
    the file cannot be read, VideoTooShort at the end when not one snippet was complete.
    info (a dict, optional) receives "fps", "frames_estimate" (at 25 fps, or None) and, at
    the end, "frames" (decoded frames at 25 fps)."""
    if crop > resize:
        raise ValueError(f"crop {crop} is larger than resize {resize}")
    cap, fps, count = open_video(path)
    if info is not None:
        info.update(fps=float(fps), frames_estimate=frames_at(count, fps) if count else None)
    rgb, gray = [], []
    waiting = None             # a complete snippet, until the frame after it is decoded
    n = 0
    last_id, last = None, None
    try:
        for frame in resampled_frames(cap, fps):
            if frame is not last_id:   # a repeated frame (fps < 25) is prepared once
                last_id = frame
                last = prepare_frame(frame, resize, crop, flow_before_crop)
            if waiting is not None:
                yield waiting[0], np.stack(waiting[1] + [last[1]])
                waiting = None
            rgb.append(last[0])
            gray.append(last[1])
            n += 1
            if len(rgb) == SNIPPET:
                waiting = (np.stack(rgb), gray)
                rgb, gray = [], []
        if waiting is not None:
            yield waiting[0], np.stack(waiting[1])
    finally:
        cap.release()
    if info is not None:
        info["frames"] = n
    if n == 0:
        raise VideoError(f"{path}: no frame could be decoded (empty or corrupt video)")
    if n < SNIPPET:
        raise VideoTooShort(f"{path}: only {n} frame(s) at {FPS} fps, fewer than the {SNIPPET} of one snippet")


def rgb_input(rgb, device=None):
    """(B, 16, H, W, 3) uint8 RGB -> (B, 3, 16, H, W) float32 network input, x / 255 * 2 - 1,
    on `device` (the uint8 frames are moved there first: a quarter of the bytes)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(0, 4, 1, 2, 3).float()
    return x / 255 * 2 - 1
