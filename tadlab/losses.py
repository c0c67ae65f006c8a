"""Losses of the global-mask family: boundary IoU (bIoU), soft IoU, dice, the GSMT mask and classification losses.

Mask losses take soft masks ``pred`` (probabilities in [0, 1]) and targets of the same shape ``(..., T)``: the time
axis is ``dim`` (default the last), every other axis is a batch axis. For a global mask batch ``(B, T, T)`` whose
column t is the mask predicted at snippet t, pass ``dim=1`` (or transpose). ``valid`` (bool, broadcastable to
``pred``) marks the snippets that exist; invalid snippets count as lying outside the video, and a mask with no valid
snippet is left out of the mean. ``reduction="none"`` returns one loss per mask, shape ``pred.shape`` without ``dim``.

Papers: TAGS supplementary Eq. 1-4 (bIoU with the L2 penalty), GSMT Eq. 5 (classification) and Eq. 6 (mask loss).
Two printed slips are fixed here (see ``../shared/papers/README.md``): the dice term uses the V-Net factor 2, and the
log terms of Eq. 5 carry their minus signs (the loss is a negative log-likelihood).
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from tadlab.utils import check_choice

GSMT_EPS = math.exp(-8)  # the epsilon of GSMT Eq. 6
REDUCTIONS = {"mean", "sum", "none"}
BACKENDS = {"fast", "kornia"}
MASK_VARIANTS = {"biou", "iou", "bce"}

__all__ = [
    "GSMT_EPS",
    "biou_loss",
    "boundary_band",
    "class_balanced_logistic_loss",
    "classification_loss",
    "dice_loss",
    "erosion_1d",
    "focal_loss",
    "iou_loss",
    "mask_loss",
    "soft_iou",
]


# ----------------------------------------------------------------------------------------------------------- checks
def _check_kernel_size(kernel_size) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    return kernel_size


def _check_masks(pred, target=None, valid=None, dim=-1):
    """Check the mask arguments; return them with the time axis moved last and ``target`` in ``pred``'s dtype."""
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    if not pred.is_floating_point():
        raise TypeError(f"pred must be a floating-point tensor of mask probabilities, got dtype {pred.dtype}")
    if pred.dim() < 1 or pred.shape[dim] == 0:
        raise ValueError(f"pred must have shape (..., T) with T >= 1 along dim={dim}, got {tuple(pred.shape)}")
    pred = pred.movedim(dim, -1)
    if target is not None:
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
        if not (target.is_floating_point() or target.dtype == torch.bool):
            raise TypeError(f"target must be a float or bool mask, got dtype {target.dtype}")
        target = target.movedim(dim, -1)
        if target.shape != pred.shape:
            raise ValueError(f"target must have pred's shape {tuple(pred.movedim(-1, dim).shape)}, "
                             f"got {tuple(target.movedim(-1, dim).shape)}")
        target = target.to(pred.dtype)
    if valid is not None:
        if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool:
            raise TypeError(f"valid must be a bool tensor, got {getattr(valid, 'dtype', type(valid).__name__)}")
        if valid.dim() > pred.dim():
            raise ValueError(f"valid of shape {tuple(valid.shape)} has more axes than pred {tuple(pred.shape)}")
        valid = valid.reshape((1,) * (pred.dim() - valid.dim()) + tuple(valid.shape)).movedim(dim, -1)
        try:
            valid = valid.expand(pred.shape)
        except RuntimeError as exc:
            raise ValueError(f"valid of shape {tuple(valid.movedim(-1, dim).shape)} does not broadcast to "
                             f"pred's shape {tuple(pred.movedim(-1, dim).shape)}") from exc
    return pred, target, valid


def _reduce(per_mask: torch.Tensor, valid: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Reduce per-mask losses ``(...)``; masks without a valid snippet are left out (and are 0 under "none")."""
    check_choice("reduction", reduction, REDUCTIONS)
    if valid is not None:
        counts = valid.any(-1)
        per_mask = torch.where(counts, per_mask, torch.zeros_like(per_mask))
    if reduction == "none":
        return per_mask
    if reduction == "sum":
        return per_mask.sum()
    if valid is None:
        return per_mask.mean()
    return per_mask.sum() / counts.sum().clamp(min=1).to(per_mask.dtype)


def _masked(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return x if valid is None else torch.where(valid, x, torch.zeros_like(x))


# ------------------------------------------------------------------------------------------------------- morphology
def erosion_1d(masks: torch.Tensor, kernel_size: int = 7, backend: str = "fast",
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """Grey-level erosion of 1-D soft masks along the last axis: ``out[t] = min(m[t - k//2 : t - k//2 + k])``.

    masks ``(..., T)`` float -> ``(..., T)``. The border is kornia's "geodesic" one: values outside the video (and
    snippets where ``valid`` is False) are ignored, so an all-ones mask stays all ones.
    ``backend="kornia"`` calls ``kornia.morphology.erosion`` with a ``1 x k`` flat kernel (what the paper uses);
    ``backend="fast"`` computes the same minimum as ``-max_pool1d(-m)``, whose implicit ``-inf`` padding is the
    geodesic border. Both agree in value and gradient (ties go to the first position of the window in both).
    """
    masks, _, valid = _check_masks(masks, valid=valid)
    return _erode(masks, kernel_size, backend, valid)


def _erode(masks: torch.Tensor, kernel_size: int, backend: str, valid: torch.Tensor | None) -> torch.Tensor:
    """:func:`erosion_1d` on checked inputs: ``valid`` is None or a bool tensor of ``masks``' shape."""
    check_choice("backend", backend, BACKENDS)
    kernel_size = _check_kernel_size(kernel_size)
    shape, length = masks.shape, masks.shape[-1]
    flat = masks.reshape(-1, length)
    if valid is not None:  # invalid snippets act as outside the video: +inf never wins a minimum
        flat = flat.masked_fill(~valid.reshape(-1, length), float("inf"))
    if backend == "kornia":
        kernel = torch.ones(1, kernel_size, device=masks.device, dtype=masks.dtype)
        eroded = kornia.morphology.erosion(flat[:, None, None, :], kernel)  # (N, 1, 1, T): a 1 x T image
    else:
        # max_pool1d pads with -inf on -m, i.e. +inf on m (geodesic); with padding k//2 output t covers the same
        # window as kornia's origin k//2, and an even k gives one extra output that is dropped.
        eroded = -F.max_pool1d(-flat[:, None, :], kernel_size, stride=1, padding=kernel_size // 2)
        eroded = eroded[..., :length]
    return eroded.reshape(shape)


def boundary_band(masks: torch.Tensor, kernel_size: int = 7, backend: str = "fast",
                  valid: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """The boundary band Phi(m) = m - erosion(m, k) of soft masks (TAGS supp. Eq. 1-2), same shape as ``masks``.

    masks ``(..., T)`` (time axis ``dim``) -> ``(..., T)``. For a binary mask the band holds the foreground snippets
    within k//2 of a start or end inside the video; a mask that fills the whole video has an empty band (geodesic
    border). Once k >= 2T - 1 the erosion is the global minimum, so Phi(m) = m - min(m), which is m itself for a mask
    that touches 0 somewhere: bIoU becomes plain IoU.
    """
    masks, _, valid = _check_masks(masks, valid=valid, dim=dim)
    band = masks - _erode(masks, kernel_size, backend, valid)
    return _masked(band, valid).movedim(-1, dim)


# ------------------------------------------------------------------------------------------------------ mask losses
def soft_iou(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None = None,
             eps: float = GSMT_EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft IoU along the last axis: ``(I + eps) / (U + eps)`` with I = sum(a*b), U = sum(a + b - a*b).

    a, b ``(..., T)`` -> (iou, intersection, union), each ``(...)``. Two empty masks have IoU 1 (loss 0).
    """
    a, b = _masked(a, valid), _masked(b, valid)
    inter = (a * b).sum(-1)
    union = a.sum(-1) + b.sum(-1) - inter  # sum(a + b - a*b) without two more full-size tensors
    return (inter + eps) / (union + eps), inter, union


def iou_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, dim: int = -1,
             reduction: str = "mean", eps: float = GSMT_EPS) -> torch.Tensor:
    """Soft IoU loss ``1 - |P n G| / |P u G|`` of whole masks ``(..., T)``; the L_IOU of TAGS supp. Table 2."""
    pred, target, valid = _check_masks(pred, target, valid, dim)
    return _reduce(1 - soft_iou(pred, target, valid, eps)[0], valid, reduction)


def biou_loss(pred: torch.Tensor, target: torch.Tensor, kernel_size: int = 7, valid: torch.Tensor | None = None,
              dim: int = -1, reduction: str = "mean", backend: str = "fast", use_biou: bool = True,
              l2_penalty: bool = True, eps: float = GSMT_EPS) -> torch.Tensor:
    """Boundary-IoU loss with its L2 penalty (TAGS supp. Eq. 2-4): ``1 - bIoU(P, G) + lambda * L2(P, G)``.

    pred, target ``(..., T)`` soft masks (time axis ``dim``) -> ``(...)`` under ``reduction="none"``, else a scalar.

    - bIoU = |Phi(G) n Phi(P)| / |Phi(G) u Phi(P)|, soft intersection and union of the boundary bands (Eq. 2);
    - lambda = 1 / (|Phi(G) n Phi(P)| + eps), eps = e^-8 (Eq. 3 as GSMT Eq. 6 prints it: the inverse of the band
      overlap, so the penalty takes over when the bands do not meet and bIoU has no gradient);
    - L2 = ||P - G||_2 / c, the Euclidean distance of the masks over the valid snippets divided by the ground-truth
      foreground count c = sum(G) (clamped to >= 1 for an empty target), as in GSMT Eq. 6.

    Our reading: lambda is a coefficient (the paper calls it one), so it is detached; its own gradient would be
    L2 / (overlap + eps)^2, up to e^16 * L2 when the bands do not meet. ``use_biou`` and ``l2_penalty`` switch the
    two parts (at least one must be on).
    """
    if not (use_biou or l2_penalty):
        raise ValueError("biou_loss needs use_biou or l2_penalty (or both) to be True, got both False")
    pred, target, valid = _check_masks(pred, target, valid, dim)
    band_pred = _masked(pred - _erode(pred, kernel_size, backend, valid), valid)
    band_target = _masked(target - _erode(target, kernel_size, backend, valid), valid)
    biou, overlap, _ = soft_iou(band_pred, band_target, valid, eps)
    loss = 1 - biou if use_biou else torch.zeros_like(biou)
    if l2_penalty:
        weight = 1 / (overlap.detach() + eps)
        distance = torch.linalg.vector_norm(_masked(pred - target, valid), dim=-1)  # gradient 0 at P == G
        count = _masked(target, valid).sum(-1).clamp(min=1)
        loss = loss + weight * distance / count
    return _reduce(loss, valid, reduction)


def dice_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, dim: int = -1,
              reduction: str = "mean", eps: float = GSMT_EPS) -> torch.Tensor:
    """V-Net dice loss ``1 - (2 sum(P*G) + eps) / (sum(P^2) + sum(G^2) + eps)`` of masks ``(..., T)``.

    GSMT Eq. 6 prints the dice term without the factor 2, which would score a perfect mask 0.5; this is the V-Net
    form it cites (Milletari et al. 2016). Two empty masks score 0.
    """
    pred, target, valid = _check_masks(pred, target, valid, dim)
    pred, target = _masked(pred, valid), _masked(target, valid)
    inter = (pred * target).sum(-1)
    sizes = (pred * pred).sum(-1) + (target * target).sum(-1)
    return _reduce(1 - (2 * inter + eps) / (sizes + eps), valid, reduction)


def mask_loss(pred: torch.Tensor, target: torch.Tensor, variant: str = "biou", kernel_size: int = 7,
              lambda2: float = 0.4, valid: torch.Tensor | None = None, dim: int = -1, reduction: str = "mean",
              backend: str = "fast", l2_penalty: bool = True, eps: float = GSMT_EPS) -> torch.Tensor:
    """The GSMT mask loss (Eq. 6) and the variants of its ablations, on soft masks ``(..., T)``.

    - ``"biou"`` (default, Eq. 6): ``biou_loss(k, with the lambda*L2 penalty) + lambda2 * dice_loss``;
    - ``"iou"`` (TAGS supp. Table 2, L_dice + L_IOU): ``iou_loss + lambda2 * dice_loss``;
    - ``"bce"``: plain binary cross-entropy averaged over the valid snippets of each mask (TAGS supp. Table 5 uses
      BMN's weighted BCE; this is the unweighted one).
    Returns ``(...)`` under ``reduction="none"``, else a scalar.
    """
    check_choice("variant", variant, MASK_VARIANTS)
    if variant == "bce":
        pred_l, target_l, valid_l = _check_masks(pred, target, valid, dim)
        # clamping one machine epsilon inside (0, 1) keeps saturated predictions finite in value and gradient
        tiny = torch.finfo(pred_l.dtype).eps
        per_snippet = F.binary_cross_entropy(pred_l.clamp(tiny, 1 - tiny), target_l, reduction="none")
        per_snippet = _masked(per_snippet, valid_l)
        count = pred_l.shape[-1] if valid_l is None else valid_l.sum(-1).clamp(min=1)
        return _reduce(per_snippet.sum(-1) / count, valid_l, reduction)
    common = {"valid": valid, "dim": dim, "reduction": reduction, "eps": eps}
    if variant == "biou":
        region = biou_loss(pred, target, kernel_size, backend=backend, l2_penalty=l2_penalty, **common)
    else:
        region = iou_loss(pred, target, **common)
    return region + lambda2 * dice_loss(pred, target, **common)


# ------------------------------------------------------------------------------------------ classification (Eq. 5)
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
