"""Class-map grouping: the detections a per-snippet class map alone gives.

A model that scores every snippet for every class (a per-snippet classifier, GSMT's class branch P, SegTAD's
segmentation output) gives a *class map* ``P`` of shape ``(K+1, T)``, background last. The standard way to turn
it into segments without any proposal or mask machinery is to threshold each class's curve ``P[c, :]`` at several
levels and take every run of consecutive snippets above a level as a candidate, as temporal actionness grouping
(TAG, Zhao et al., "Temporal Action Detection with Structured Segment Networks", 2017) does on an actionness
curve; Soft-NMS then removes the duplicates the several levels create.

    candidates = runs of  P[c, t] >= theta   for every action class c and every theta in thresholds
    score      = mean of P[c, t] over the run  minus  its mean over the flanks around the run ("contrast")
    detections = class-aware Soft-NMS of the candidates, best first

The contrast (as BSN's and TAGS's "outer-inner" scores) matters: with the plain mean (``score="mean"``), the short
high-confidence fragments that the high thresholds cut out of an instance outrank the instance itself; a
fragment's flanks are as confident as it is, the instance's flanks are background.

What grouping cannot do is the point of the detectors that follow: two instances of the same class separated by
a gap shorter than the class map can resolve merge into one run, and a dip inside an instance (an occlusion, a
cut) splits it. The several thresholds help with the second, never with the first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tadlab.segments import batched_soft_nms

DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # the same Theta GSMT uses for its masks


def activation_runs(active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every run of consecutive ``True`` along the last axis of ``active`` ``(..., T)``.

    Returns ``rows (R, ndim - 1)`` (the index of each run's row in the leading dimensions), ``start (R,)`` and
    ``end (R,)`` int64, the run being ``[start, end)``; runs are listed in row-major order, then by start.
    """
    if not isinstance(active, torch.Tensor) or active.dtype != torch.bool or active.dim() < 1:
        raise TypeError(f"active must be a boolean tensor (..., T), got "
                        f"{active.dtype if isinstance(active, torch.Tensor) else type(active).__name__}")
    padded = F.pad(active, (1, 1))
    run_starts = active & ~padded[..., :-2]  # active, previous one not
    run_ends = active & ~padded[..., 2:]  # active, next one not
    # nonzero lists both in the same row-major order and every row has as many starts as ends: the k-th start
    # pairs with the k-th end.
    starts, ends = run_starts.nonzero(), run_ends.nonzero()
    return starts[:, :-1], starts[:, -1], ends[:, -1] + 1


def class_map_candidates(probs: torch.Tensor, thresholds=DEFAULT_THRESHOLDS, min_length: int = 1,
                         score: str = "contrast", flank: float = 0.25):
    """Every (class, threshold) run of an action row of ``probs`` (B, K+1, T), background last.

    Returns ``video, label, start, end, score`` (R,) tensors: the candidate ``[start, end)`` in snippet units of
    class ``label`` in video ``video``. Its score is the mean of ``probs[video, label]`` over it
    (``score="mean"``), minus, for ``score="contrast"``, the mean over the flanks ``[start - f, start)`` and
    ``[end, end + f)`` with ``f = max(1, round(flank * length))`` (positions past the video's ends count as 0),
    clamped at 0. Identical candidates found at several thresholds are kept once. Runs shorter than
    ``min_length`` snippets are dropped.
    """
    _check_probs(probs)
    thresholds = _check_thresholds(thresholds, probs)
    if score not in ("mean", "contrast"):
        raise ValueError(f"score must be 'mean' or 'contrast', got {score!r}")
    if not flank > 0:
        raise ValueError(f"flank must be positive, got {flank!r}")
    if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
        raise ValueError(f"min_length must be a positive int, got {min_length!r}")
    num_classes, num_snippets = probs.shape[1] - 1, probs.shape[2]
    action = probs[:, :num_classes]                                                       # (B, K, T)
    active = action[:, :, None, :] >= thresholds[:, None]                                  # (B, K, H, T)
    rows, start, end = activation_runs(active)
    video, label = rows[:, 0], rows[:, 1]
    keep = end - start >= min_length
    video, label, start, end = video[keep], label[keep], start[keep], end[keep]
    # The same run often passes several thresholds: keep one copy.
    span = num_snippets + 1
    key = ((video * num_classes + label) * span + start) * span + end
    key = torch.unique(key)
    end, key = key % span, key // span
    start, key = key % span, key // span
    label, video = key % num_classes, key // num_classes
    # Mean of the class curve over each run, from a cumulative sum (no loop over runs).
    cumulative = F.pad(action.cumsum(dim=-1), (1, 0))                                      # (B, K, T+1)
    total = cumulative[video, label, end] - cumulative[video, label, start]
    length = (end - start).to(probs.dtype)
    inside = total / length
    if score == "mean":
        return video, label, start, end, inside
    # Flanks, clipped to the video; the part past either end adds nothing (background) but counts in the mean.
    f = torch.clamp(torch.round(flank * length), min=1).long()
    left = cumulative[video, label, start] - cumulative[video, label, (start - f).clamp_min(0)]
    right = cumulative[video, label, (end + f).clamp_max(num_snippets)] - cumulative[video, label, end]
    outside = (left + right) / (2 * f).to(probs.dtype)
    return video, label, start, end, (inside - outside).clamp_min(0)


def group_class_map(probs: torch.Tensor, thresholds=DEFAULT_THRESHOLDS, *, min_length: int = 1,
                    score: str = "contrast", flank: float = 0.25, top_k: int | None = 100,
                    nms: dict | None = None) -> list[dict]:
    """Class-map grouping: ``probs`` (B, K+1, T) (softmax over K actions + background) -> one dict per video of
    ``segments`` (M, 2) snippet units, ``scores`` (M,), ``labels`` (M,) int64, best first.

    Candidates from :func:`class_map_candidates` (``score``, ``flank``), then class-aware Soft-NMS per video (``nms``: keyword
    arguments of :func:`tadlab.segments.batched_soft_nms`, default gaussian with sigma 0.5) keeping ``top_k``
    (None: all).
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    nms = {"method": "gaussian", "sigma": 0.5} if nms is None else dict(nms)
    video, label, start, end, scores = class_map_candidates(probs, thresholds, min_length, score, flank)
    segments = torch.stack([start, end], dim=1).to(probs.dtype)
    detections = []
    for b in range(probs.shape[0]):  # one Soft-NMS per video; the candidates were found batched
        own = (video == b).nonzero().squeeze(1)
        kept_segments, kept_scores, kept_labels, _ = batched_soft_nms(segments[own], scores[own], label[own],
                                                                      top_k=top_k, **nms)
        detections.append({"segments": kept_segments, "scores": kept_scores, "labels": kept_labels.long()})
    return detections


def _check_probs(probs) -> None:
    if not isinstance(probs, torch.Tensor) or probs.dim() != 3 or probs.shape[1] < 2:
        shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise ValueError(f"probs must be a tensor (B, K+1, T) with K >= 1 action classes, got {shape}")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be floating point probabilities, got dtype {probs.dtype}")


def _check_thresholds(thresholds, probs: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(thresholds, dtype=probs.dtype, device=probs.device).reshape(-1)
    if values.numel() == 0 or bool(((values <= 0) | (values >= 1)).any()):
        raise ValueError(f"thresholds must be a non-empty list of values in (0, 1), got {values.tolist()}")
    return values
