"""Classification losses: GSMT's Eq. 5 (softmax focal + class-balanced logistic regression) and the sigmoid focal
loss that query-based detectors (SP-TAD) train their classifiers with. ``tadlab.losses`` re-exports them, so every
loss is imported from one place.

GSMT: Nag et al., "Temporal Action Localization with Global Segmentation Mask Transformers", Sec. 3.3, Eq. 5
(gamma = 2, alpha = 10, |N| = K/10 hard negatives, lambda_1 = 0.4). Eq. 5 is printed without the minus signs of its
log terms, which as printed would reward wrong answers; they are restored here, as the loss is a negative
log-likelihood. The class-balanced logistic regression is Dong et al., "Single-label multi-class image
classification by deep logistic regression", AAAI 2019, which Eq. 5 cites.
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from tadlab.utils import check_choice

REDUCTIONS = {"mean", "sum", "none"}


def _check_classification(logits, labels, name="logits"):
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (B, K+1, ...), got "
                        f"{getattr(logits, 'dtype', type(logits).__name__)}")
    if logits.dim() < 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must have shape (B, K+1, ...) with K+1 >= 2 classes, got {tuple(logits.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        raise TypeError(f"labels must be an int64 tensor (B, ...), got {getattr(labels, 'dtype', type(labels))}")
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(labels.shape) != expected:
        raise ValueError(f"labels must have shape {expected} for {name} {tuple(logits.shape)}, "
                         f"got {tuple(labels.shape)}")
    bad = (labels < -1) | (labels >= logits.shape[1])
    if bad.any():
        raise ValueError(f"labels must be 0..{logits.shape[1] - 1} for {name} of K+1 = {logits.shape[1]} classes "
                         f"(K = background) or -1 for padding, got {int(labels[bad][0])}")


def _reduce_labels(per_item: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce ``(B, ...)`` losses over the items whose label is not the padding -1."""
    check_choice("reduction", reduction, REDUCTIONS)
    keep = labels >= 0
    per_item = torch.where(keep, per_item, torch.zeros_like(per_item))
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return per_item.sum()
    return per_item.sum() / keep.sum().clamp(min=1).to(per_item.dtype)


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """Softmax focal loss ``-(1 - p_y)^gamma log p_y`` over K+1 classes (first term of GSMT Eq. 5, gamma = 2).

    logits ``(B, K+1, ...)``, labels ``(B, ...)`` int64 in [0, K] (K = background), -1 = padding (ignored).
    Returns ``(B, ...)`` under ``reduction="none"``, else the sum or the mean over the labelled items.
    Computed by ``kornia.losses.focal_loss`` (alpha=None: no class weighting, as Eq. 5 has none).
    """
    _check_classification(logits, labels)
    per_class = kornia.losses.focal_loss(logits, labels, alpha=None, gamma=gamma, reduction="none", ignore_index=-1)
    return _reduce_labels(per_class.sum(1), labels, reduction)  # only the target slice is non-zero


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float | None = 0.25, gamma: float = 2.0,
                       reduction: str = "mean") -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017): one independent binary decision per class, as SP-TAD, Sparse R-CNN and
    Deformable DETR train their classifiers (no background class: "no action" is an all-zero target row).

        FL = -alpha t (1 - p)^gamma log p - (1 - alpha)(1 - t) p^gamma log(1 - p),   p = sigmoid(logit)

    logits and targets (in [0, 1]) of the same shape, e.g. ``(B, N, K)``; ``alpha=None`` drops the weighting.
    Returns the elementwise loss (``"none"``), its sum or its mean over all entries. DETR-style set losses sum and
    divide by the number of positives themselves. Computed by ``kornia.losses.binary_focal_loss_with_logits``.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got "
                        f"{getattr(logits, 'dtype', type(logits).__name__)}")
    if not isinstance(targets, torch.Tensor) or targets.shape != logits.shape:
        raise ValueError(f"targets must be a tensor of the logits' shape {tuple(logits.shape)}, got "
                         f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be None or in [0, 1], got {alpha!r}")
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    # kornia wants (B, C, *): one row holds every entry, whatever the input's shape.
    per_entry = kornia.losses.binary_focal_loss_with_logits(
        logits.reshape(1, -1), targets.to(logits.dtype).reshape(1, -1), alpha=alpha, gamma=gamma, reduction="none",
        ignore_index=None).reshape(logits.shape)
    if reduction == "none":
        return per_entry
    return per_entry.sum() if reduction == "sum" else per_entry.mean()


def class_balanced_logistic_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 10.0,
                                 num_hard_negatives: int | None = None, reduction: str = "mean") -> torch.Tensor:
    """Class-balanced logistic regression loss (second term of GSMT Eq. 5, after Dong et al. 2019).

    Our reading of Eq. 5 (minus signs restored): with per-class sigmoid outputs r = sigmoid(logits) over the same
    K+1 classes as the softmax head,
        L = -log r_y - (alpha / |N|) * sum_{k in N} log(1 - r_k),
    where N holds the |N| = ceil(K / 10) non-target classes with the highest r (the hard negatives; K = number of
    action classes, so K+1 = logits.shape[1]); alpha = 10 balances the one positive against the negatives. The
    selection itself passes no gradient. Logs are taken as softplus of the logits, so saturated outputs stay finite.
    logits ``(B, K+1, ...)``, labels ``(B, ...)`` int64, -1 ignored -> ``(B, ...)`` or a scalar.
    """
    _check_classification(logits, labels)
    num_classes = logits.shape[1] - 1
    if num_hard_negatives is None:
        num_hard_negatives = math.ceil(num_classes / 10)
    if not 1 <= num_hard_negatives <= num_classes:
        raise ValueError(f"num_hard_negatives must be in [1, {num_classes}] for K = {num_classes}, "
                         f"got {num_hard_negatives}")
    logits = logits.movedim(1, -1)  # (B, ..., K+1)
    target = labels.clamp(min=0).unsqueeze(-1)
    positive = F.softplus(-logits.gather(-1, target)).squeeze(-1)  # -log sigmoid(z_y)
    others = logits.detach().scatter(-1, target, float("-inf"))  # the target can never be a negative
    hard = others.topk(num_hard_negatives, dim=-1).indices
    negative = F.softplus(logits.gather(-1, hard)).mean(-1)  # mean of -log(1 - sigmoid(z_k))
    return _reduce_labels(positive + alpha * negative, labels, reduction)


def classification_loss(class_logits: torch.Tensor, regression_logits: torch.Tensor, labels: torch.Tensor,
                        lambda1: float = 0.4, gamma: float = 2.0, alpha: float = 10.0,
                        reduction: str = "mean") -> torch.Tensor:
    """GSMT Eq. 5: ``lambda1 * focal(p) + (1 - lambda1) * class-balanced LR(r)`` with lambda1 = 0.4.

    class_logits ``(B, K+1, ...)`` (softmax head p), regression_logits ``(B, K+1, ...)`` (sigmoid head r, used only
    in training), labels ``(B, ...)`` int64 in [0, K], -1 ignored.
    """
    if regression_logits.shape != class_logits.shape:
        raise ValueError(f"regression_logits must have class_logits' shape {tuple(class_logits.shape)}, "
                         f"got {tuple(regression_logits.shape)}")
    focal = focal_loss(class_logits, labels, gamma, reduction)
    logistic = class_balanced_logistic_loss(regression_logits, labels, alpha, reduction=reduction)
    return lambda1 * focal + (1 - lambda1) * logistic
