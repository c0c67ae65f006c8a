"""Operations on temporal segments: tIoU, 1D GIoU, seconds <-> snippets, Soft-NMS (and BSN/BMN's variant).

A segment is a pair ``[start, end)`` of floats, stacked as ``(..., N, 2)``. In the library segments are in
*snippet units* (snippet t covers [t, t + 1)); only names that say ``seconds`` use seconds. Every function is
torch, works on any device and keeps the inputs' dtype; the IoU functions broadcast over leading batch dims.
"""
from __future__ import annotations

import math

import torch

from tadlab.utils import check_choice

__all__ = [
    "batched_soft_nms",
    "bmn_soft_nms",
    "seconds_to_snippets",
    "segment_giou",
    "segment_iou",
    "snippets_to_seconds",
    "soft_nms",
]


def _as_segments(name: str, segments, *, allow_batch: bool = True) -> torch.Tensor:
    """Return ``segments`` as a floating tensor ``(..., N, 2)`` after checking shape, finiteness and order."""
    if not isinstance(segments, torch.Tensor):
        try:
            segments = torch.as_tensor(segments)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a tensor of shape (N, 2), got {type(segments).__name__}") from exc
    if segments.dtype == torch.bool or segments.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {segments.dtype}")
    if not segments.is_floating_point():
        segments = segments.to(torch.get_default_dtype())
    if segments.dim() < 2 or segments.shape[-1] != 2 or (not allow_batch and segments.dim() != 2):
        expected = "(..., N, 2)" if allow_batch else "(N, 2)"
        raise ValueError(f"{name} must have shape {expected} as [start, end) pairs, got {tuple(segments.shape)}")
    if not torch.isfinite(segments).all():
        raise ValueError(f"{name} must be finite, got NaN or inf in {int((~torch.isfinite(segments)).sum())} entries")
    bad = segments[..., 0] > segments[..., 1]
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} must have start <= end, got start > end at index {where}: {segments[where].tolist()}"
        )
    return segments


def _common(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.device != b.device:
        raise ValueError(f"a and b must be on the same device, got {a.device} and {b.device}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def _overlap_terms(a, b, aligned: bool):
    """Intersection, union and enclosing length of a (..., N, 2) with b (..., M, 2) (or (..., N, 2) aligned)."""
    a = _as_segments("a", a)
    b = _as_segments("b", b)
    a, b = _common(a, b)
    if aligned:
        if a.shape[-2] != b.shape[-2]:
            raise ValueError(
                f"aligned=True needs a and b with the same N, got a {tuple(a.shape)} and b {tuple(b.shape)}"
            )
        sa, ea, sb, eb = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    else:  # pairwise: (..., N, 1) against (..., 1, M)
        sa, ea = a[..., :, None, 0], a[..., :, None, 1]
        sb, eb = b[..., None, :, 0], b[..., None, :, 1]
    inter = (torch.minimum(ea, eb) - torch.maximum(sa, sb)).clamp(min=0)
    union = (ea - sa) + (eb - sb) - inter
    enclosing = torch.maximum(ea, eb) - torch.minimum(sa, sb)
    return inter, union, enclosing


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # Two zero-length segments have union 0: define their ratio as 0 instead of NaN.
    return torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), torch.zeros_like(num))


def segment_iou(a, b, aligned: bool = False) -> torch.Tensor:
    """Temporal IoU (tIoU) of segments: |a ∩ b| / |a ∪ b|.

    a: (..., N, 2), b: (..., M, 2) -> (..., N, M) pairwise; with ``aligned=True`` b is (..., N, 2) and the
    result (..., N) compares a[i] with b[i]. Leading dims broadcast. Two zero-length segments give 0.
    """
    inter, union, _ = _overlap_terms(a, b, aligned)
    return _safe_ratio(inter, union)


def segment_giou(a, b, aligned: bool = False) -> torch.Tensor:
    """1D generalized IoU: tIoU - (|C| - |a ∪ b|) / |C|, with C the smallest segment enclosing a and b.

    Same shapes as :func:`segment_iou`. Values lie in [-1, 1] and never exceed the tIoU; unlike the tIoU it
    still tells apart two disjoint segments that are near from two that are far (as a loss it has a gradient).
    """
    inter, union, enclosing = _overlap_terms(a, b, aligned)
    return _safe_ratio(inter, union) - _safe_ratio(enclosing - union, enclosing)


def _check_time_scale(duration, num_snippets):
    if isinstance(num_snippets, bool) or not isinstance(num_snippets, int) or num_snippets <= 0:
        raise ValueError(f"num_snippets must be a positive int, got {num_snippets!r}")
    dur = torch.as_tensor(duration)
    if not torch.isfinite(dur).all() or (dur <= 0).any():
        raise ValueError(f"duration must be positive and finite (seconds), got {duration!r}")


def seconds_to_snippets(seconds, duration, num_snippets: int):
    """Seconds -> snippet units: ``seconds * num_snippets / duration``.

    ``seconds`` can be a number, numpy array or tensor of any shape; ``duration`` (seconds, > 0) must broadcast
    against it (for a batch (B, N, 2) pass durations[:, None, None]). The type of ``seconds`` is kept.
    """
    _check_time_scale(duration, num_snippets)
    return seconds * (num_snippets / duration)


def snippets_to_seconds(snippets, duration, num_snippets: int):
    """Snippet units -> seconds: ``snippets * duration / num_snippets`` (inverse of :func:`seconds_to_snippets`)."""
    _check_time_scale(duration, num_snippets)
    return snippets * (duration / num_snippets)


def _check_nms_args(segments, scores, method, sigma, iou_threshold, min_score, top_k):
    segments = _as_segments("segments", segments, allow_batch=False)
    if not isinstance(scores, torch.Tensor):
        scores = torch.as_tensor(scores)
    if not scores.is_floating_point():
        raise TypeError(f"scores must be a floating tensor, got dtype {scores.dtype}")
    if scores.shape != segments.shape[:1]:
        raise ValueError(f"scores must have shape (N,) = ({segments.shape[0]},) like segments, got {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError(f"scores must be finite, got NaN or inf in {int((~torch.isfinite(scores)).sum())} entries")
    if scores.device != segments.device:
        raise ValueError(f"segments and scores must be on the same device, got {segments.device} and {scores.device}")
    check_choice("method", method, {"gaussian", "linear", "hard"})
    if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if not (isinstance(iou_threshold, (int, float)) and 0 <= iou_threshold <= 1):
        raise ValueError(f"iou_threshold must be a number in [0, 1], got {iou_threshold!r}")
    if not (isinstance(min_score, (int, float)) and math.isfinite(min_score)):
        raise ValueError(f"min_score must be a finite number, got {min_score!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
    return segments, scores


def _soft_nms_loop(segments, scores, groups, method, sigma, iou_threshold, min_score, top_k, width_rule=None):
    """Greedy Soft-NMS; ``groups`` (N,) or None: segments of different groups never suppress each other.
    ``width_rule`` (low, high, video_length) or None: the Gaussian decay applies only where the tIoU exceeds
    low + (high - low) * (selected width / video_length) (:func:`bmn_soft_nms`).

    Returns indices (M,) in selection order and the scores they had when selected.
    """
    n = segments.shape[0]
    work = scores.clone()
    alive = work >= min_score
    limit = n if top_k is None else min(top_k, n)
    picked, picked_scores = [], []
    neg_inf = torch.tensor(float("-inf"), dtype=work.dtype, device=work.device)
    # The inputs were checked once by the caller; the loop computes tIoU inline (as segment_iou does) because it runs
    # top_k times and per-call checks would dominate its time.
    start, end = segments[:, 0], segments[:, 1]
    length = end - start
    while len(picked) < limit:
        # argmax returns the first maximum, so ties go to the lowest index (as a stable sort would).
        best = int(torch.argmax(torch.where(alive, work, neg_inf)))
        if not bool(alive[best]):
            break
        picked.append(best)
        picked_scores.append(work[best])
        alive[best] = False
        inter = (torch.minimum(end, end[best]) - torch.maximum(start, start[best])).clamp(min=0)
        iou = _safe_ratio(inter, length + length[best] - inter)
        if groups is not None:
            iou = torch.where(groups == groups[best], iou, torch.zeros_like(iou))
        if method == "gaussian":
            decay = torch.exp(-(iou * iou) / sigma)
            if width_rule is not None:
                low, high, video_length = width_rule
                threshold = low + (high - low) * length[best] / video_length
                decay = torch.where(iou > threshold, decay, torch.ones_like(decay))
            work = work * decay
        elif method == "linear":
            work = torch.where(iou > iou_threshold, work * (1 - iou), work)
        else:  # hard
            alive &= ~(iou > iou_threshold)
        alive &= work >= min_score
    index = torch.tensor(picked, dtype=torch.int64, device=segments.device)
    kept_scores = torch.stack(picked_scores) if picked_scores else scores.new_zeros(0)
    return index, kept_scores


def soft_nms(
    segments,
    scores,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.5,
    min_score: float = 1e-3,
    top_k: int | None = None,
):
    """Soft-NMS (Bodla et al., 2017) on one video's detections.

    segments (N, 2), scores (N,) -> kept segments (M, 2), their decayed scores (M,) and their indices into the
    input (M,) int64, in selection order (which is also non-increasing score order).

    Repeatedly select the highest remaining score, then decay every other remaining score by its tIoU with
    the selected segment: ``"gaussian"`` multiplies by exp(-tIoU² / sigma); ``"linear"`` by (1 - tIoU) when
    tIoU > iou_threshold; ``"hard"`` (classic NMS) drops it when tIoU > iou_threshold. Scores under
    ``min_score`` are dropped (also before the first step); at most ``top_k`` are kept. Ties in score go to
    the lower index.
    """
    segments, scores = _check_nms_args(segments, scores, method, sigma, iou_threshold, min_score, top_k)
    index, kept = _soft_nms_loop(segments, scores.to(segments.dtype), None, method, sigma, iou_threshold,
                                 min_score, top_k)
    return segments[index], kept.to(scores.dtype), index


def bmn_soft_nms(
    segments,
    scores,
    video_length: float,
    sigma: float = 0.4,
    low_threshold: float = 0.5,
    high_threshold: float = 0.9,
    top_k: int | None = 100,
):
    """Soft-NMS as BSN and BMN post-process proposals (BMN's public code, ``soft_nms`` in post_processing.py).

    segments (N, 2), scores (N,) of one video -> kept segments (M, 2), their decayed scores (M,) and their indices
    into the input (M,) int64, in selection order (non-increasing score), as :func:`soft_nms` returns them.

    Repeatedly select the highest remaining score; a remaining segment is decayed, by exp(-tIoU² / ``sigma``), only
    when its tIoU with the selected one exceeds a threshold that grows with the *selected* segment's width w,
    normalised by the video's length:

        tIoU > low_threshold + (high_threshold - low_threshold) * w / video_length

    BMN on ActivityNet: sigma ("alpha" there) 0.4, thresholds 0.5 and 0.9 (the PyTorch port and MMAction2; the
    authors' PaddleVideo code has 0.55 and 0.9), the best 100 kept (the loop selects 101, the results keep the best
    100 of them); BSN's code has the same rule with 0.75, 0.65 and 0.9. A short selected proposal suppresses its
    neighbours from tIoU 0.5 on, one covering the whole video only those above tIoU 0.9, so nearby long proposals,
    which overlap a lot just by being long, survive. Plain Gaussian Soft-NMS (:func:`soft_nms`) decays every
    overlap: with both thresholds 0 this function is ``soft_nms(..., method="gaussian", min_score=0.0)`` on
    non-negative scores.

    ``video_length`` is in the segments' units (T for snippet units: BMN divides by its T = 100). Deviation, stated:
    BMN's loop stops when one candidate is left (``while len(tscore) > 1``), so with at most 101 candidates it drops
    the last one; that off-by-one is not kept here. Scores are never dropped for being small (BMN has no
    threshold), and ties go to the lower index.
    """
    segments, scores = _check_nms_args(segments, scores, "gaussian", sigma, 0.5, 0.0, top_k)
    if isinstance(video_length, bool) or not isinstance(video_length, (int, float)) \
            or not (math.isfinite(video_length) and video_length > 0):
        raise ValueError(f"video_length must be a positive number (the video's length in the segments' units), "
                         f"got {video_length!r}")
    for name, value in (("low_threshold", low_threshold), ("high_threshold", high_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1] (a tIoU), got {value!r}")
    index, kept = _soft_nms_loop(segments, scores.to(segments.dtype), None, "gaussian", sigma, 0.5, -math.inf,
                                 top_k, width_rule=(float(low_threshold), float(high_threshold), float(video_length)))
    return segments[index], kept.to(scores.dtype), index


def batched_soft_nms(
    segments,
    scores,
    labels,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.5,
    min_score: float = 1e-3,
    top_k: int | None = None,
):
    """Class-aware Soft-NMS: a detection is decayed only by selected detections of its own class.

    segments (N, 2), scores (N,), labels (N,) int -> segments (M, 2), scores (M,), labels (M,), indices (M,)
    int64, merged over classes in decreasing score order; ``top_k`` caps the merged list. The result equals
    running :func:`soft_nms` on each class and merging by score, done in one greedy pass (segments of other
    classes get tIoU 0, i.e. no decay).
    """
    segments, scores = _check_nms_args(segments, scores, method, sigma, iou_threshold, min_score, top_k)
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels must have shape (N,) = ({scores.shape[0]},) like scores, got {tuple(labels.shape)}")
    labels = labels.to(segments.device)
    index, kept = _soft_nms_loop(segments, scores.to(segments.dtype), labels, method, sigma, iou_threshold,
                                 min_score, top_k)
    return segments[index], kept.to(scores.dtype), labels[index], index
