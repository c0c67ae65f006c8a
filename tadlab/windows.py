"""Sliding windows: a detector that sees clips of a long video, as SP-TAD does on THUMOS14.

SP-TAD (Sec. 4.1, Implementation Details) never sees a whole THUMOS14 video: it cuts 256-frame clips (25.6 s at
10 fps) with a stride of 30 frames for training and 128 for inference, records a ground-truth instance in a clip
when its tIoA with the clip (its overlap over its own length) exceeds 0.5 (Sec. 4.3, Fig. 4), and merges the
overlapping clips' detections with Soft-NMS. A 25.6 s clip holds a few instances that each fill a fair share of
it; a whole video holds dozens, each a sliver.

- :func:`window_starts`: where the windows of a video start (the last one ends at the video's end);
- :func:`crop_windows`: training items, one per window with at least one recorded instance;
- :class:`SlidingWindowDetector`: wraps a trained detector so that ``model(features)`` / ``model.detect(...)``
  run it on every window of whole videos and return whole-video detections (so :func:`tadlab.train.predict` and
  :func:`tadlab.train.evaluate` work unchanged).
"""
from __future__ import annotations

import torch
from torch import nn


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def window_starts(num_snippets: int, length: int, stride: int) -> list[int]:
    """Start snippets of windows ``length`` long, ``stride`` apart, covering ``[0, num_snippets)``: 0, stride,
    2 stride, ... and a last window ending exactly at ``num_snippets`` (a video shorter than ``length``: [0])."""
    for name, value in (("num_snippets", num_snippets), ("length", length), ("stride", stride)):
        _positive_int(name, value)
    if num_snippets <= length:
        return [0]
    starts = list(range(0, num_snippets - length, stride))
    return starts + [num_snippets - length]


def crop_windows(items, length: int, stride: int, min_ioa: float = 0.5, keep_empty: bool = False,
                 center_features: bool = False) -> list[dict]:
    """Video items cut into windows (training samples, SP-TAD Sec. 4.1 and 4.3).

    Each window of :func:`window_starts` becomes an item of ``length`` snippets (zero-padded past a short video's
    end): ``video_id`` ``"<id>@<start>"``, ``features`` (C, length), the instances whose tIoA with the window
    exceeds ``min_ioa``, clipped to it and shifted to its start (``segments`` (M, 2), ``labels`` (M,)), and
    ``duration`` the window's share of the video's seconds. Windows that record no instance are dropped unless
    ``keep_empty``. ``center_features``: subtract each *video's* per-channel mean over time before cutting (a
    per-video offset goes; a window's own evidence stays, which centring each window would remove where an action
    fills it). Returns the list, videos in order, windows left to right.
    """
    _positive_int("length", length)
    _positive_int("stride", stride)
    if not 0 <= min_ioa < 1:
        raise ValueError(f"min_ioa must be in [0, 1), got {min_ioa!r}")
    windows = []
    for item in items:
        features, segments, labels = item["features"], item["segments"], item["labels"]
        if center_features:
            features = features - features.mean(dim=-1, keepdim=True)
        num_snippets = features.shape[-1]
        for start in window_starts(num_snippets, length, stride):
            end = start + length
            inside = segments.clamp(start, end)
            overlap = (inside[:, 1] - inside[:, 0]).clamp_min(0)
            ioa = overlap / (segments[:, 1] - segments[:, 0]).clamp_min(1e-6)
            keep = ioa > min_ioa
            if not keep.any() and not keep_empty:
                continue
            crop = features[:, start:end]
            if crop.shape[-1] < length:
                crop = torch.nn.functional.pad(crop, (0, length - crop.shape[-1]))
            windows.append({"video_id": f"{item['video_id']}@{start}", "features": crop,
                            "segments": inside[keep] - start, "labels": labels[keep],
                            "duration": float(item["duration"]) * length / num_snippets})
    return windows


class SlidingWindowDetector(nn.Module):
    """A detector run on sliding windows of whole videos; its detections merged by class-aware Soft-NMS.

    Args:
        model: a detector with ``forward(features (B, C, L))`` and ``detect(outputs, **kwargs)``, trained on
            windows of ``length`` snippets (:func:`crop_windows`).
        length, stride: the windows (SP-TAD: 256 frames, stride 128 at inference).
        nms: keyword arguments of :func:`tadlab.segments.batched_soft_nms` for the merge (``{}``: its Gaussian
            default).
        top_k: detections kept per video after the merge.
        center_features: subtract each video's per-channel mean over time first (as :func:`crop_windows`).

    ``forward(features (B, C, T))`` returns ``{"windows": the inner model's outputs on the B W windows,
    "starts": [W starts], "batch": B, "num_snippets": T}``; :meth:`detect` returns one dict per video with
    ``segments`` (M, 2) in the video's snippet units clamped to [0, T], ``scores`` (M,), ``labels`` (M,), best first.
    Train the inner model on :func:`crop_windows` items: :meth:`loss` refuses.
    """

    def __init__(self, model: nn.Module, length: int, stride: int, nms: dict | None = None, top_k: int = 200,
                 center_features: bool = False):
        super().__init__()
        self.center_features = center_features
        self.model = model
        self.length, self.stride = _positive_int("length", length), _positive_int("stride", stride)
        self.top_k = _positive_int("top_k", top_k)
        if nms is not None and not isinstance(nms, dict):
            raise TypeError(f"nms must be a dict of batched_soft_nms arguments or None, got {nms!r}")
        self.nms = {} if nms is None else dict(nms)

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    def forward(self, features: torch.Tensor) -> dict:
        if not isinstance(features, torch.Tensor) or features.dim() != 3:
            raise ValueError(f"features must be a (B, C, T) tensor, got "
                             f"{tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)}")
        batch, _, num_snippets = features.shape
        if self.center_features:
            features = features - features.mean(dim=-1, keepdim=True)
        starts = window_starts(num_snippets, self.length, self.stride)
        if num_snippets < self.length:
            features = torch.nn.functional.pad(features, (0, self.length - num_snippets))
        # (B, C, T) -> (B W, C, L): video-major, window-minor
        clips = torch.stack([features[..., s:s + self.length] for s in starts], dim=1).flatten(0, 1)
        return {"windows": self.model(clips), "starts": starts, "batch": batch, "num_snippets": num_snippets}

    @torch.no_grad()
    def detect(self, outputs: dict, **detect_kwargs) -> list[dict]:
        """Whole-video detections: each window's (``detect_kwargs`` go to the inner model's ``detect``) shifted
        by its start, pooled per video, merged by Soft-NMS, the ``top_k`` best kept."""
        from tadlab.segments import batched_soft_nms

        starts, num_snippets = outputs["starts"], outputs["num_snippets"]
        per_window = self.model.detect(outputs["windows"], **detect_kwargs)
        detections = []
        for b in range(outputs["batch"]):
            parts = per_window[b * len(starts):(b + 1) * len(starts)]
            segments = torch.cat([p["segments"] + s for p, s in zip(parts, starts)]).clamp(0, num_snippets)
            scores = torch.cat([p["scores"] for p in parts])
            labels = torch.cat([p["labels"] for p in parts])
            keep = segments[:, 1] > segments[:, 0]
            segments, scores, labels, _ = batched_soft_nms(segments[keep], scores[keep], labels[keep],
                                                           **{"top_k": self.top_k, **self.nms})
            detections.append({"segments": segments, "scores": scores, "labels": labels.to(torch.int64)})
        return detections

    def loss(self, outputs: dict, batch: dict):
        raise TypeError("SlidingWindowDetector is for inference: train its model on crop_windows(items, length, "
                        "stride) instead")
