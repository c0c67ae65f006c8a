"""Label assignment: how each TAD family turns annotations into training targets.

Every function takes ground truth in snippet units, one video ``segments (N, 2)``, ``labels (N,)`` or a padded
batch ``(B, N, 2)``, ``(B, N)`` where label -1 marks padding rows (as ``tadlab.data.collate_videos`` makes), and
returns targets with the same leading batch dims. New tensors follow the segments' device (float targets also
their dtype). Functions that need no classes take ``labels`` only to find the padding rows.

Shared rules, stated once:
- **Centre rule.** Snippet t covers [t, t + 1); it lies inside instance [s, e) when s <= t + 0.5 < e. An
  instance shorter than a snippet may cover no centre and then owns no snippet.
- **Overlap rule.** A snippet inside several instances belongs to the shortest of them (ties: the lower index),
  as FCOS/ActionFormer pick the smallest target; short actions would otherwise vanish under long ones.
  ``snippet_labels``, ``frame_labels`` and ``global_masks`` all use this one choice.

Families: snippet labels and T×T global masks (GSMT Sec. 3.3, Fig. 3); frame and boundary labels (SegTAD
Sec. 3.2.3) with BSN/BMN's widened boundaries; the BMN boundary-matching map (as RCL refines it) and SegTAD's
sparse proposal targets (Eq. 8, 10); one-to-one set matching (SP-TAD Sec. 3.2.1, DETR); one-to-many tIoU
assignment; ActionFormer-style centre sampling with per-level regression ranges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from tadlab.segments import _as_segments, segment_giou, segment_iou

__all__ = [
    "ACTIONFORMER_RANGES",
    "ACTIONFORMER_STRIDES",
    "CENTRE_TIE_TOLERANCE",
    "boundary_labels",
    "boundary_matching_map",
    "boundary_matching_valid",
    "centre_sampling_assign",
    "frame_labels",
    "global_masks",
    "hungarian_match",
    "matching_cost",
    "set_match",
    "snippet_instances",
    "snippet_labels",
    "sparse_proposal_targets",
    "sparse_proposals",
    "tiou_assign",
]

_TOL = 1e-4  # segments converted from seconds may overshoot [0, T] by rounding


# ------------------------------------------------------------------------------------------ input checks
@dataclass
class _GroundTruth:
    segments: torch.Tensor  # (B, N, 2) float, padding rows zeroed
    labels: torch.Tensor  # (B, N) int64, -1 on padding
    valid: torch.Tensor  # (B, N) bool
    batched: bool

    def out(self, x: torch.Tensor) -> torch.Tensor:
        """Drop the batch dim again for a single video."""
        return x if self.batched else x[0]


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _ground_truth(segments, labels, num_snippets, num_classes=None) -> _GroundTruth:
    """Validate one video (N, 2)/(N,) or a padded batch (B, N, 2)/(B, N) and return it batched."""
    num_snippets = _check_positive_int("num_snippets", num_snippets)
    if num_classes is not None:
        num_classes = _check_positive_int("num_classes", num_classes)
    if not isinstance(segments, torch.Tensor):
        segments = torch.as_tensor(segments)
    if not segments.is_floating_point():
        if segments.dtype == torch.bool or segments.is_complex():
            raise TypeError(f"segments must hold real numbers, got dtype {segments.dtype}")
        segments = segments.to(torch.get_default_dtype())
    if segments.dim() not in (2, 3) or segments.shape[-1] != 2:
        raise ValueError(f"segments must have shape (N, 2) or (B, N, 2), got {tuple(segments.shape)}")
    batched = segments.dim() == 3
    if labels is None:
        labels = torch.zeros(segments.shape[:-1], dtype=torch.int64, device=segments.device)
    else:
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
            raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
        if labels.shape != segments.shape[:-1]:
            raise ValueError(
                f"labels must have shape {tuple(segments.shape[:-1])} to match segments "
                f"{tuple(segments.shape)}, got {tuple(labels.shape)}"
            )
        labels = labels.to(device=segments.device, dtype=torch.int64)
    if not batched:
        segments, labels = segments[None], labels[None]
    valid = labels != -1
    upper = num_classes if num_classes is not None else math.inf
    bad = valid & ((labels < 0) | (labels >= upper))
    if bad.any():
        b, n = (int(i) for i in bad.nonzero()[0])
        expected = f"0..{num_classes - 1}" if num_classes is not None else "non-negative"
        raise ValueError(f"labels must be {expected} (or -1 for padding), got {int(labels[b, n])} "
                         f"at {(b, n) if batched else n}")
    start, end = segments[..., 0], segments[..., 1]
    checks = [
        (~torch.isfinite(segments).all(-1), "finite"),
        (start >= end, "start < end"),
        ((start < -_TOL) | (end > num_snippets + _TOL), f"0 <= start < end <= num_snippets={num_snippets}"),
    ]
    for failed, rule in checks:
        failed = failed & valid
        if failed.any():
            b, n = (int(i) for i in failed.nonzero()[0])
            raise ValueError(f"segments must satisfy {rule} (snippet units), got {segments[b, n].tolist()} "
                             f"at {(b, n) if batched else n}; pad batches with label -1")
    segments = torch.where(valid[..., None], segments, torch.zeros_like(segments))
    if segments.shape[1] == 0:  # one inert padding row keeps every gather below well defined
        segments = segments.new_zeros(segments.shape[0], 1, 2)
        labels = labels.new_full((labels.shape[0], 1), -1)
        valid = labels != -1
    return _GroundTruth(segments, labels, valid, batched)


def _snippet_centres(gt: _GroundTruth, num_snippets: int) -> torch.Tensor:
    return torch.arange(num_snippets, device=gt.segments.device, dtype=gt.segments.dtype) + 0.5


def _inside(gt: _GroundTruth, num_snippets: int) -> torch.Tensor:
    """(B, N, T) bool: snippet t lies inside instance n by the centre rule (padding rows: never)."""
    c = _snippet_centres(gt, num_snippets)
    s, e = gt.segments[..., 0:1], gt.segments[..., 1:2]
    return (s <= c) & (c < e) & gt.valid[..., None]


def _owner(gt: _GroundTruth, inside: torch.Tensor) -> torch.Tensor:
    """(B, T) int64: the instance each snippet belongs to by the overlap rule, -1 for background."""
    length = (gt.segments[..., 1] - gt.segments[..., 0])[..., None].expand_as(inside)
    length = torch.where(inside, length, torch.full_like(length, math.inf))
    owner = length.argmin(dim=1)  # first minimum: ties go to the lower index
    return torch.where(inside.any(dim=1), owner, torch.full_like(owner, -1))


# ------------------------------------------------------------------------------------------ GSMT
def snippet_instances(segments, num_snippets: int, labels=None) -> torch.Tensor:
    """Index of the instance each snippet belongs to (centre and overlap rules), -1 for background.

    segments (N, 2) or (B, N, 2), labels (N,)/(B, N) optional (padding = -1) -> (T,) or (B, T) int64.
    """
    gt = _ground_truth(segments, labels, num_snippets)
    return gt.out(_owner(gt, _inside(gt, num_snippets)))


def snippet_labels(segments, labels, num_snippets: int, num_classes: int) -> torch.Tensor:
    """Class of every snippet, background = ``num_classes`` (GSMT Fig. 3b).

    segments (N, 2)/(B, N, 2), labels (N,)/(B, N) -> (T,)/(B, T) int64. A snippet takes the class of the
    instance it lies in by the centre rule (s <= t + 0.5 < e); inside several, that of the shortest one.
    """
    gt = _ground_truth(segments, labels, num_snippets, num_classes)
    owner = _owner(gt, _inside(gt, num_snippets))
    cls = gt.labels.gather(1, owner.clamp(min=0))
    return gt.out(torch.where(owner >= 0, cls, torch.full_like(cls, num_classes)))


def global_masks(segments, num_snippets: int, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """GSMT global segmentation mask targets (Sec. 3.3, Fig. 3c).

    segments (N, 2)/(B, N, 2), labels optional (only to mark padding with -1) ->
    masks (T, T)/(B, T, T) in the segments' dtype, with column t the full-length binary mask (centre rule) of
    the instance snippet t belongs to (overlap rule: the shortest), and valid (T,)/(B, T) bool, False at
    background snippets, whose all-zero columns carry no mask target.
    """
    gt = _ground_truth(segments, labels, num_snippets)
    inside = _inside(gt, num_snippets)  # (B, N, T)
    owner = _owner(gt, inside)  # (B, T)
    columns = inside.gather(1, owner.clamp(min=0)[..., None].expand(-1, -1, num_snippets))  # (B, T_col, T_row)
    columns = columns & (owner >= 0)[..., None]
    masks = columns.transpose(1, 2).to(gt.segments.dtype)
    return gt.out(masks), gt.out(owner >= 0)


# ------------------------------------------------------------------------------------------ SegTAD 1D-SSN
def frame_labels(segments, labels, num_snippets: int, num_classes: int, multi_label: bool = False) -> torch.Tensor:
    """SegTAD frame labels beta_{t,d} (Sec. 3.2.3, Eq. 4): one-hot classes per snippet, background last.

    segments (N, 2)/(B, N, 2), labels (N,)/(B, N) -> (T, K + 1)/(B, T, K + 1) in the segments' dtype.
    Single-label (default): the one-hot of :func:`snippet_labels`, the softmax target of Eq. 4.
    ``multi_label=True``: a snippet inside overlapping instances of different classes gets all of them
    (background only when it is inside none), a variant for datasets with co-occurring actions.
    """
    gt = _ground_truth(segments, labels, num_snippets, num_classes)
    inside = _inside(gt, num_snippets)
    dtype = gt.segments.dtype
    if not multi_label:
        owner = _owner(gt, inside)
        cls = gt.labels.gather(1, owner.clamp(min=0))
        cls = torch.where(owner >= 0, cls, torch.full_like(cls, num_classes))
        return gt.out(torch.nn.functional.one_hot(cls, num_classes + 1).to(dtype))
    onehot = torch.nn.functional.one_hot(gt.labels.clamp(min=0), num_classes + 1).to(dtype)  # (B, N, K+1)
    hits = torch.einsum("bnt,bnk->btk", inside.to(dtype), onehot).clamp(max=1)
    hits[..., num_classes] = (~inside.any(dim=1)).to(dtype)
    return gt.out(hits)


def boundary_labels(segments, num_snippets: int, width: float = 0.0, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end targets per snippet: SegTAD's auxiliary boundary labels (Eq. 5), optionally widened.

    segments (N, 2)/(B, N, 2), labels optional (padding = -1) -> starts, ends: (T,)/(B, T) in the segments' dtype.
    ``width=0`` (SegTAD): 1 at the first and at the last snippet inside each instance (centre rule), else 0.
    ``width>0`` (BSN/BMN; BMN uses 3 snippets): each boundary b gets a region [b - width/2, b + width/2] and
    snippet t the largest fraction of [t, t + 1) that a region covers (intersection over the snippet's
    length), a soft target in [0, 1].
    """
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width >= 0):
        raise ValueError(f"width must be a number >= 0 (snippets), got {width!r}")
    gt = _ground_truth(segments, labels, num_snippets)
    dtype = gt.segments.dtype
    if width == 0:
        inside = _inside(gt, num_snippets)
        t = torch.arange(num_snippets, device=inside.device)
        first = torch.where(inside, t, num_snippets).amin(dim=2)  # (B, N); T when the instance owns no snippet
        last = torch.where(inside, t, -1).amax(dim=2)
        starts = (first[..., None] == t).any(dim=1)
        ends = (last[..., None] == t).any(dim=1)
        return gt.out(starts.to(dtype)), gt.out(ends.to(dtype))
    left = torch.arange(num_snippets, device=gt.segments.device, dtype=dtype)

    def coverage(boundary):  # boundary (B, N) -> (B, T)
        lo = torch.maximum(left, (boundary - width / 2)[..., None])
        hi = torch.minimum(left + 1, (boundary + width / 2)[..., None])
        return ((hi - lo).clamp(min=0) * gt.valid[..., None]).amax(dim=1)

    return gt.out(coverage(gt.segments[..., 0])), gt.out(coverage(gt.segments[..., 1]))


# ------------------------------------------------------------------------------------------ proposal maps
def _best_iou(proposals: torch.Tensor, gt: _GroundTruth) -> tuple[torch.Tensor, torch.Tensor]:
    """proposals (P, 2) or (B, P, 2) -> best tIoU (B, P) over the valid instances and its index (B, P)."""
    iou = segment_iou(proposals.to(gt.segments.dtype), gt.segments)  # (B, P, N)
    iou = torch.where(gt.valid[:, None, :], iou, torch.full_like(iou, -1.0))
    best, index = iou.max(dim=-1)
    index = torch.where(best >= 0, index, torch.full_like(index, -1))
    return best.clamp(min=0), index


def boundary_matching_valid(num_snippets: int, max_duration: int, device=None) -> torch.Tensor:
    """(D, T) bool: the BM-map proposal [t, t + d + 1) ends inside the video (BMN trains only on these)."""
    num_snippets = _check_positive_int("num_snippets", num_snippets)
    max_duration = _check_positive_int("max_duration", max_duration)
    d = torch.arange(max_duration, device=device)[:, None]
    t = torch.arange(num_snippets, device=device)
    return t + d + 1 <= num_snippets


def boundary_matching_map(segments, num_snippets: int, max_duration: int, labels=None) -> torch.Tensor:
    """BMN boundary-matching confidence target (the D×T map RCL refines).

    segments (N, 2)/(B, N, 2), labels optional (padding = -1) -> (D, T)/(B, D, T) in the segments' dtype,
    D = ``max_duration``. Entry (d, t) is the best tIoU of the proposal [t, t + d + 1) (start snippet t,
    d + 1 snippets long) with the ground truth; cells whose proposal runs past the video end
    (see :func:`boundary_matching_valid`) are 0. An entry is 1 exactly where a proposal equals an instance.
    """
    gt = _ground_truth(segments, labels, num_snippets)
    max_duration = _check_positive_int("max_duration", max_duration)
    dtype, device = gt.segments.dtype, gt.segments.device
    t = torch.arange(num_snippets, device=device, dtype=dtype)
    d = torch.arange(1, max_duration + 1, device=device, dtype=dtype)
    grid = torch.stack([t.expand(max_duration, -1), t + d[:, None]], dim=-1).reshape(-1, 2)  # (D*T, 2)
    best, _ = _best_iou(grid, gt)
    best = best.reshape(-1, max_duration, num_snippets)
    best = best * boundary_matching_valid(num_snippets, max_duration, device)
    return gt.out(best)


def sparse_proposals(num_snippets: int, eta: int = 8, max_duration: int | None = None, device=None,
                     dtype=torch.float32) -> torch.Tensor:
    """SegTAD's sparse proposal pattern (Eq. 8): every [i, i + j) with i % eta == 0, j % eta == 0, j >= eta,
    inside the video (and j <= max_duration when given). -> (M, 2), ordered by start, then length.

    SegTAD uses eta = 8 on L = 1000 snippets; on short T choose a smaller eta.
    """
    num_snippets = _check_positive_int("num_snippets", num_snippets)
    eta = _check_positive_int("eta", eta)
    longest = num_snippets if max_duration is None else _check_positive_int("max_duration", max_duration)
    starts = torch.arange(0, num_snippets, eta, device=device, dtype=dtype)
    lengths = torch.arange(eta, longest + 1, eta, device=device, dtype=dtype)
    pairs = torch.stack(torch.broadcast_tensors(starts[:, None], starts[:, None] + lengths), dim=-1).reshape(-1, 2)
    return pairs[pairs[:, 1] <= num_snippets]


def sparse_proposal_targets(segments, num_snippets: int, eta: int = 8, iou_threshold: float = 0.5, labels=None,
                            max_duration: int | None = None) -> dict[str, torch.Tensor]:
    """SegTAD proposal detection targets (Eq. 10) on the sparse pattern of :func:`sparse_proposals`.

    segments (N, 2)/(B, N, 2), labels optional (padding = -1) -> dict with
    ``proposals`` (M, 2), ``iou`` (M,)/(B, M): h_reg, the tIoU with the closest (best-overlapping) instance,
    and ``positive`` (M,)/(B, M) bool: h_cls = 1(h_reg > iou_threshold), tau = 0.5 in SegTAD.
    """
    _check_threshold(iou_threshold)
    gt = _ground_truth(segments, labels, num_snippets)
    proposals = sparse_proposals(num_snippets, eta, max_duration, device=gt.segments.device, dtype=gt.segments.dtype)
    best, _ = _best_iou(proposals, gt)
    return {"proposals": proposals, "iou": gt.out(best), "positive": gt.out(best > iou_threshold)}


def _check_threshold(iou_threshold):
    if not (isinstance(iou_threshold, (int, float)) and 0 <= iou_threshold <= 1):
        raise ValueError(f"iou_threshold must be a number in [0, 1], got {iou_threshold!r}")


def tiou_assign(proposals, segments, labels, num_classes: int, iou_threshold: float = 0.5,
                num_snippets: int | None = None) -> dict[str, torch.Tensor]:
    """One-to-many assignment: every anchor/proposal whose best tIoU with an instance exceeds the threshold
    is a positive of that instance (many proposals may share one instance); the rest are background.

    proposals (P, 2) (shared) or (B, P, 2); segments (N, 2)/(B, N, 2), labels (N,)/(B, N) ->
    dict with ``iou`` (P,)/(B, P) best tIoU, ``gt_index`` (P,)/(B, P) int64 (its instance, -1 if negative),
    ``labels`` (P,)/(B, P) int64 (class, or ``num_classes`` for background), ``positive`` bool.
    ``num_snippets`` bounds the ground truth check (default: the largest proposal end or segment end).
    """
    _check_threshold(iou_threshold)
    proposals = _as_segments("proposals", proposals)
    if proposals.dim() not in (2, 3):
        raise ValueError(f"proposals must have shape (P, 2) or (B, P, 2), got {tuple(proposals.shape)}")
    if num_snippets is None:
        seg = torch.as_tensor(segments)
        ends = [float(proposals[..., 1].max()) if proposals.numel() else 0.0,
                float(seg[..., 1].max()) if seg.numel() else 0.0]
        num_snippets = max(1, math.ceil(max(ends)))
    gt = _ground_truth(segments, labels, num_snippets, num_classes)
    if proposals.dim() == 3 and proposals.shape[0] != gt.segments.shape[0]:
        raise ValueError(f"proposals batch {proposals.shape[0]} != segments batch {gt.segments.shape[0]}")
    best, index = _best_iou(proposals.to(gt.segments.device), gt)
    positive = (best > iou_threshold) & (index >= 0)
    cls = gt.labels.gather(1, index.clamp(min=0))
    return {
        "iou": gt.out(best),
        "gt_index": gt.out(torch.where(positive, index, torch.full_like(index, -1))),
        "labels": gt.out(torch.where(positive, cls, torch.full_like(cls, num_classes))),
        "positive": gt.out(positive),
    }


# ------------------------------------------------------------------------------------------ one-to-one
def hungarian_match(cost) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment (scipy's ``linear_sum_assignment``).

    cost (Q, N) -> (rows (M,), cols (M,)) int64 on the cost's device, M = min(Q, N), rows ascending.
    For a (B, Q, N) cost: a list of B such pairs.
    """
    if not isinstance(cost, torch.Tensor):
        cost = torch.as_tensor(cost)
    if cost.dim() not in (2, 3):
        raise ValueError(f"cost must have shape (Q, N) or (B, Q, N), got {tuple(cost.shape)}")
    if cost.is_complex() or not (cost.is_floating_point() or cost.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"cost must be a real tensor, got dtype {cost.dtype}")
    if not torch.isfinite(cost).all():
        raise ValueError("cost must be finite, got NaN or inf")
    if cost.dim() == 3:
        return [hungarian_match(c) for c in cost]
    rows, cols = linear_sum_assignment(cost.detach().to("cpu", torch.float64).numpy())
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.int64, device=cost.device)
    return as_tensor(rows), as_tensor(cols)


def matching_cost(pred_logits, pred_segments, segments, labels, num_snippets: int, *, cost_class: float = 2.0,
                  cost_l1: float = 5.0, cost_giou: float = 2.0, class_cost: str = "focal", alpha: float = 0.25,
                  gamma: float = 2.0) -> torch.Tensor:
    """DETR/SP-TAD matching cost of Q predictions against the N instances of one video.

    pred_logits (Q, K), pred_segments (Q, 2) snippet units, segments (N, 2), labels (N,) -> cost (Q, N):
    ``cost_class`` * classification cost + ``cost_l1`` * L1 of the boundaries normalised by T (SP-TAD regresses
    normalised locations) - ``cost_giou`` * GIoU. Classification cost: ``"focal"`` (SP-TAD trains with focal
    loss; sigmoid probabilities, as Sparse R-CNN/Deformable DETR) or ``"prob"`` (DETR: -softmax probability).
    SP-TAD does not print its weights; the defaults 2/5/2 are Sparse R-CNN's, on which SP-TAD builds.
    """
    if class_cost not in ("focal", "prob"):
        raise ValueError(f"class_cost must be one of ['focal', 'prob'], got {class_cost!r}")
    if not isinstance(pred_logits, torch.Tensor) or pred_logits.dim() != 2 or not pred_logits.is_floating_point():
        raise ValueError(f"pred_logits must be a float tensor (Q, K), got "
                         f"{tuple(pred_logits.shape) if isinstance(pred_logits, torch.Tensor) else type(pred_logits)}")
    num_queries, num_classes = pred_logits.shape
    pred_segments = _as_segments("pred_segments", pred_segments, allow_batch=False)
    if pred_segments.shape[0] != num_queries:
        raise ValueError(f"pred_segments must have shape (Q, 2) = ({num_queries}, 2) like pred_logits, got "
                         f"{tuple(pred_segments.shape)}")
    if not torch.isfinite(pred_logits).all():
        raise ValueError("pred_logits must be finite, got NaN or inf")
    gt = _ground_truth(segments, labels, num_snippets, num_classes)
    if gt.batched:
        raise ValueError("matching_cost takes one video: segments (N, 2), labels (N,); use set_match for batches")
    gt_seg, gt_lab = gt.segments[0][gt.valid[0]], gt.labels[0][gt.valid[0]]
    logits = pred_logits[:, gt_lab]  # (Q, N)
    if class_cost == "focal":
        p = logits.sigmoid()
        pos = alpha * (1 - p) ** gamma * -torch.nn.functional.logsigmoid(logits)
        neg = (1 - alpha) * p ** gamma * -torch.nn.functional.logsigmoid(-logits)
        cls = pos - neg
    else:
        cls = -pred_logits.softmax(-1)[:, gt_lab]
    pred = pred_segments.to(gt_seg.dtype)
    l1 = torch.cdist(pred / num_snippets, gt_seg / num_snippets, p=1)
    giou = segment_giou(pred, gt_seg)
    return cost_class * cls.to(l1.dtype) + cost_l1 * l1 - cost_giou * giou


def set_match(pred_logits, pred_segments, segments, labels, num_snippets: int, **cost_kwargs):
    """One-to-one (bipartite) assignment of predictions to instances, as SP-TAD/DETR train.

    One video: pred_logits (Q, K), pred_segments (Q, 2), segments (N, 2), labels (N,) ->
    (pred_index (M,), gt_index (M,)) int64, M = min(Q, N), the assignment minimising :func:`matching_cost`
    (keyword arguments go to it). gt_index counts rows of ``segments``. Padded batch: (B, Q, K), (B, Q, 2),
    (B, N, 2), (B, N) -> a list of B pairs; padding rows (label -1) are never matched. Unmatched
    predictions are the "no action" targets.
    """
    if isinstance(pred_logits, torch.Tensor) and pred_logits.dim() == 3:
        segments, labels = torch.as_tensor(segments), torch.as_tensor(labels)
        if segments.dim() != 3 or len(segments) != len(pred_logits) or len(pred_segments) != len(pred_logits):
            raise ValueError(f"batched set_match needs pred_segments (B, Q, 2) and segments (B, N, 2) with "
                             f"B = {len(pred_logits)}, got {tuple(pred_segments.shape)} and {tuple(segments.shape)}")
        return [set_match(pl, ps, s, l, num_snippets, **cost_kwargs)
                for pl, ps, s, l in zip(pred_logits, pred_segments, segments, labels)]
    if labels is None:
        raise ValueError("labels must be given (N,), got None")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape (N,) for one video, got {tuple(labels.shape)}")
    cost = matching_cost(pred_logits, pred_segments, segments, labels, num_snippets, **cost_kwargs)
    real = (labels != -1).nonzero()[:, 0].to(cost.device)  # cost columns are the non-padding rows
    rows, cols = hungarian_match(cost)
    return rows, real[cols]


# ------------------------------------------------------------------------------------------ ActionFormer
ACTIONFORMER_STRIDES = (1, 2, 4, 8, 16, 32)
ACTIONFORMER_RANGES = ((0.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0), (32.0, 64.0), (64.0, math.inf))
CENTRE_TIE_TOLERANCE = 1e-3  # snippets: lengths this close tie for multi-label targets (ActionFormer's 1e-3)


def centre_sampling_assign(segments, labels, num_snippets: int, num_classes: int,
                           strides=ACTIONFORMER_STRIDES, regression_ranges=ACTIONFORMER_RANGES,
                           radius: float = 1.5, multi_label: bool = False) -> dict[str, torch.Tensor]:
    """ActionFormer-style assignment on a feature pyramid: centre sampling + per-level regression ranges.

    Level l has stride s_l and points at (i + 0.5) * s_l, i < ceil(T / s_l) (the centre of the snippets
    it pools; ActionFormer puts them at i * s_l). A point is a positive of an instance when
    (1) it lies strictly inside the instance's centre region [c - radius * s_l, c + radius * s_l] ∩ [s, e)
    (c the instance centre), and (2) its largest distance to the two boundaries falls in the level's
    regression range [lo, hi] (snippet units). Several candidates: the shortest instance (then lower index).

    segments (N, 2)/(B, N, 2), labels (N,)/(B, N) -> dict with, over all P points of all levels:
    ``points`` (P,), ``strides`` (P,), ``levels`` (P,) int64; ``labels`` (P,)/(B, P) int64 (background =
    ``num_classes``), ``gt_index`` (P,)/(B, P) int64 (-1 negative), ``offsets`` (P, 2)/(B, P, 2): distances
    (t - s, e - t) divided by the stride as ActionFormer regresses them (0 at negatives).

    ``multi_label=True`` adds ``classes`` (P, K)/(B, P, K) in the segments' dtype: the multi-hot class target
    ActionFormer's release trains with. A point takes the class of every candidate whose length ties with the
    shortest one's (within ``CENTRE_TIE_TOLERANCE`` snippets), so an action annotated twice with the same
    boundaries under two classes (THUMOS14 labels every CliffDiving as Diving too) teaches both; ``labels`` and
    ``offsets`` still follow the single instance above (tied instances have the same offsets up to the tolerance).
    """
    if not isinstance(multi_label, bool):
        raise TypeError(f"multi_label must be True or False, got {multi_label!r}")
    strides = tuple(strides)
    regression_ranges = tuple(tuple(float(v) for v in r) for r in regression_ranges)
    if not strides or len(strides) != len(regression_ranges):
        raise ValueError(f"strides and regression_ranges must have the same non-zero length, got "
                         f"{len(strides)} and {len(regression_ranges)}")
    for s in strides:
        _check_positive_int("strides", s)
    if any(len(r) != 2 or r[0] > r[1] for r in regression_ranges):
        raise ValueError(f"regression_ranges must be (lo, hi) pairs with lo <= hi, got {regression_ranges!r}")
    if not (isinstance(radius, (int, float)) and radius > 0):
        raise ValueError(f"radius must be a positive number, got {radius!r}")
    gt = _ground_truth(segments, labels, num_snippets, num_classes)
    dtype, device = gt.segments.dtype, gt.segments.device
    points, point_strides, levels, lo, hi = [], [], [], [], []
    for level, (stride, (r_lo, r_hi)) in enumerate(zip(strides, regression_ranges)):
        n = math.ceil(num_snippets / stride)
        points.append((torch.arange(n, device=device, dtype=dtype) + 0.5) * stride)
        for store, value in ((point_strides, stride), (levels, level), (lo, r_lo), (hi, r_hi)):
            store.append(torch.full((n,), value, device=device, dtype=torch.int64 if store is levels else dtype))
    points, point_strides, levels = torch.cat(points), torch.cat(point_strides), torch.cat(levels)
    lo, hi = torch.cat(lo), torch.cat(hi)

    s, e = gt.segments[..., 0][:, None, :], gt.segments[..., 1][:, None, :]  # (B, 1, N)
    p, ps = points[None, :, None], point_strides[None, :, None]  # (1, P, 1)
    left, right = p - s, e - p  # (B, P, N)
    centre = (s + e) / 2
    region_lo = torch.maximum(centre - radius * ps, s)
    region_hi = torch.minimum(centre + radius * ps, e)
    in_centre = torch.minimum(p - region_lo, region_hi - p) > 0
    reach = torch.maximum(left, right)
    in_range = (reach >= lo[None, :, None]) & (reach <= hi[None, :, None])
    candidate = in_centre & in_range & gt.valid[:, None, :]
    length = torch.where(candidate, (e - s).expand_as(candidate), torch.full_like(left, math.inf))
    index = length.argmin(dim=-1)  # (B, P)
    positive = candidate.any(dim=-1)
    cls = gt.labels.gather(1, index)
    offsets = torch.stack([left.gather(2, index[..., None])[..., 0], right.gather(2, index[..., None])[..., 0]], -1)
    offsets = torch.where(positive[..., None], offsets / point_strides[None, :, None], torch.zeros_like(offsets))
    out = {
        "points": points,
        "strides": point_strides,
        "levels": levels,
        "labels": gt.out(torch.where(positive, cls, torch.full_like(cls, num_classes))),
        "gt_index": gt.out(torch.where(positive, index, torch.full_like(index, -1))),
        "offsets": gt.out(offsets),
    }
    if multi_label:
        shortest = length.gather(2, index[..., None])  # (B, P, 1); inf at negatives
        tied = candidate & (length <= shortest + CENTRE_TIE_TOLERANCE)  # (B, P, N)
        one_hot = torch.nn.functional.one_hot(gt.labels.clamp(min=0), num_classes).to(dtype)  # (B, N, K)
        out["classes"] = gt.out((tied.to(dtype) @ one_hot).clamp(max=1))
    return out
