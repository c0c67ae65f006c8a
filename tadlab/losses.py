"""Losses of the global-mask family: boundary IoU (bIoU), soft IoU, dice and the GSMT mask loss (Eq. 6). The
classification losses (GSMT Eq. 5, the sigmoid focal loss of SP-TAD) live in :mod:`tadlab.classification_losses`
and are re-exported here, so every loss is imported from ``tadlab.losses``.

Mask losses take soft masks ``pred`` (probabilities in [0, 1]) and targets of the same shape ``(..., T)``: the time
axis is ``dim`` (default the last), every other axis is a batch axis. For a global mask batch ``(B, T, T)`` whose
column t is the mask predicted at snippet t, pass ``dim=1`` (or transpose). ``valid`` (bool, broadcastable to
``pred``) marks the snippets that exist; invalid snippets count as lying outside the video, and a mask with no valid
snippet is left out of the mean. ``reduction="none"`` returns one loss per mask, shape ``pred.shape`` without ``dim``.

Papers: the supplementary material of TAGS (Nag et al., "Proposal-Free Temporal Action Detection via Global
Segmentation Mask Learning", ECCV 2022), Appendix A.1, Eq. 1-4 (bIoU and its L2 penalty), and GSMT (Nag et al.,
"Temporal Action Localization with Global Segmentation Mask Transformers"), Sec. 3.3, Eq. 6 (the mask loss). Two
choices the papers leave to the reader, both options here:

- **the dice term** (``dice_form``): Eq. 6 prints ``1 - m^T g / sum(m^2 + g^2)``, and the authors' released
  ``BinaryDiceLoss`` (github.com/sauradip/TAGS, ``tags_lib/loss_tags.py``) computes that form, with 1 added to the
  numerator and the denominator. tadlab chooses the V-Net form Eq. 6 cites (Milletari et al. 2016),
  ``1 - 2 m^T g / sum(m^2 + g^2)``, by default (``"vnet"``): a perfect mask scores 0 rather than 0.5. Up to the
  smoothing constant the printed form is (1 + V-Net form) / 2: the same minimiser, half the gradient.
  ``dice_form="printed"`` gives it.
- **the border of the erosion** (``border``): what lies outside the video. ``"geodesic"`` (default; kornia's
  default ``border_type``, and Eq. 6 cites kornia's erosion) ignores it, so the video's first and last snippets are
  never a boundary and a mask that runs to the video's end has no band there. ``"zero"`` pads with background, as
  the Boundary IoU metric that bIoU follows (Cheng et al. 2021) and the released ``mask_to_boundary`` do (zero
  padding before the erosion): the video's edge is a boundary like any other.
"""
from __future__ import annotations

import contextlib
import math

import kornia
import torch
import torch.nn.functional as F

from tadlab import mask_kernels
from tadlab.classification_losses import (  # noqa: F401  (re-exported: every loss is imported from tadlab.losses)
    REDUCTIONS, class_balanced_logistic_loss, classification_loss, focal_loss, sigmoid_focal_loss)
from tadlab.utils import check_choice

GSMT_EPS = math.exp(-8)  # the epsilon of GSMT Eq. 6
BACKENDS = {"fast", "kornia"}
BORDERS = {"geodesic": math.inf, "zero": 0.0}  # the value outside the video (and at invalid snippets) in an erosion
DICE_FORMS = {"vnet": 2.0, "printed": 1.0}  # the factor of m^T g in the dice term
MASK_VARIANTS = {"biou", "iou", "bce"}
COMPILED_KERNELS = True  # the fast path runs tadlab.mask_kernels on CPU float32/float64 masks

__all__ = [
    "BORDERS",
    "DICE_FORMS",
    "GSMT_EPS",
    "biou_loss",
    "boundary_band",
    "class_balanced_logistic_loss",
    "classification_loss",
    "compiled_kernels",
    "dice_loss",
    "erosion_1d",
    "focal_loss",
    "iou_loss",
    "mask_loss",
    "sigmoid_focal_loss",
    "soft_iou",
]


# ----------------------------------------------------------------------------------------------------------- checks
def _check_kernel_size(kernel_size) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    return kernel_size


def _border_value(border) -> float:
    """The value an erosion sees outside the video for ``border`` (see the module docstring)."""
    check_choice("border", border, set(BORDERS))
    return BORDERS[border]


def _dice_factor(dice_form) -> float:
    check_choice("dice_form", dice_form, set(DICE_FORMS))
    return DICE_FORMS[dice_form]


def _check_probabilities(masks: torch.Tensor, name: str) -> None:
    """Values in [0, 1] (NaN fails too): a loss fed logits would otherwise return a wrong number without a word."""
    if masks.numel() == 0:
        return
    low, high = torch.aminmax(masks.detach())
    if not bool((low >= 0) & (high <= 1)):
        raise ValueError(f"{name} must hold probabilities in [0, 1] (apply a sigmoid to logits first), got values "
                         f"in [{float(low):.4g}, {float(high):.4g}]")


def _check_masks(pred, target=None, valid=None, dim=-1, probabilities=False):
    """Check the mask arguments; return them with the time axis moved last and ``target`` in ``pred``'s dtype.

    ``probabilities``: the losses' inputs must lie in [0, 1] (morphology alone takes any real mask).
    """
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
    if probabilities:
        _check_probabilities(pred, "pred")
        if target is not None:
            _check_probabilities(target, "target")
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
               valid: torch.Tensor | None = None, border: str = "geodesic") -> torch.Tensor:
    """Grey-level erosion of 1-D soft masks along the last axis: ``out[t] = min(m[t - k//2 : t - k//2 + k])``.

    masks ``(..., T)`` float -> ``(..., T)``. ``border``: what the windows see outside the video and at snippets
    where ``valid`` is False. ``"geodesic"`` (kornia's default) ignores them, so an all-ones mask stays all ones;
    ``"zero"`` reads them as 0 (background, the Boundary IoU metric's zero padding), so the first and last k//2
    snippets of an all-ones mask erode to 0.
    ``backend="kornia"`` calls ``kornia.morphology.erosion`` with a ``1 x k`` flat kernel (what the paper uses;
    ``border_type="geodesic"``, or ``"constant"`` with ``border_value=0``); ``backend="fast"`` computes the same
    minimum from rows padded with ``+inf`` (geodesic) or 0 by doubling: ceil(log2 k) elementwise minima of shifted
    copies (:func:`_window_min`), cheaper on CPU than ``max_pool1d``. Both agree in value and gradient (the
    gradient goes to the window's first minimum in both, and nowhere when that minimum is the zero border).
    """
    masks, _, valid = _check_masks(masks, valid=valid)
    return _erode(masks, kernel_size, backend, valid, border)


def _erode(masks: torch.Tensor, kernel_size: int, backend: str, valid: torch.Tensor | None,
           border: str = "geodesic") -> torch.Tensor:
    """:func:`erosion_1d` on checked inputs: ``valid`` is None or a bool tensor of ``masks``' shape."""
    check_choice("backend", backend, BACKENDS)
    kernel_size = _check_kernel_size(kernel_size)
    fill = _border_value(border)
    shape, length = masks.shape, masks.shape[-1]
    flat = masks.reshape(-1, length)
    if valid is not None:  # invalid snippets act as outside the video: +inf never wins a minimum, 0 is background
        flat = flat.masked_fill(~valid.reshape(-1, length), fill)
    if backend == "kornia":
        kernel = torch.ones(1, kernel_size, device=masks.device, dtype=masks.dtype)
        pad = {"border_type": "geodesic"} if border == "geodesic" else {"border_type": "constant", "border_value": fill}
        eroded = kornia.morphology.erosion(flat[:, None, None, :], kernel, **pad)  # (N, 1, 1, T): a 1 x T image
    else:
        eroded = flat if kernel_size == 1 else _FastErosion.apply(flat, kernel_size, fill)
    return eroded.reshape(shape)


def _window_min(padded: torch.Tensor, kernel_size: int, track: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Minimum over every window of ``kernel_size`` along the last axis, no gradient: ``(N, T + k - 1) -> (N, T)``.

    Doubling (as in van Herk / Gil-Werman): the minimum over width w + s is the minimum of two width-w minima s
    apart (s <= w), so ceil(log2 k) elementwise minima replace the k comparisons of a pooling kernel. With
    ``track`` it also returns the offset (in [0, k), integer ``(N, T)``) of each window's minimum, ties going to the
    first position as kornia's and max_pool's backward do; the offset is None for k = 1.
    """
    values, offsets, width = padded.detach(), None, 1
    # offsets are < k: uint8 arithmetic (cheap) wraps modulo 256, but the final offset is exact for k <= 256
    small = kernel_size <= 256
    while width < kernel_size:
        shift = min(width, kernel_size - width)
        left, right = values[..., :-shift], values[..., shift:]
        if track:
            take_right = right < left  # a tie keeps the left (earlier) window's position
            take_right = take_right.view(torch.uint8) if small else take_right.long()
            if offsets is None:
                offsets = take_right
            else:  # offsets_left + take_right * (offsets_right + shift - offsets_left), in place
                offsets_left = offsets[..., :-shift]
                offsets = offsets[..., shift:] - offsets_left
                offsets.add_(shift).mul_(take_right).add_(offsets_left)
        values = torch.minimum(left, right)
        width += shift
    return values, offsets


def _argmin_index(offsets: torch.Tensor) -> torch.Tensor:
    """Window offsets ``(N, T)`` -> int64 positions in the padded row (a ``scatter_add_`` index)."""
    length = offsets.shape[-1]
    # the addition is cheaper in int16 (a quarter of the memory traffic) when the positions fit
    dtype = torch.int16 if offsets.dtype == torch.uint8 and length + 256 < 2**15 else torch.int64
    return offsets.to(dtype).add_(torch.arange(length, device=offsets.device, dtype=dtype)).long()


def _scatter_to_argmin(grad: torch.Tensor, offsets: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Backward of the erosion: each output's gradient ``(N, T)`` goes to its window's first minimum -> ``(N, T)``."""
    length, left = grad.shape[-1], kernel_size // 2
    padded = grad.new_zeros(grad.shape[0], length + kernel_size - 1)
    padded.scatter_add_(-1, _argmin_index(offsets), grad)
    # a minimum on the border (a constant) takes its gradient with it: always possible with the zero border,
    # only for an all-+inf window with the geodesic one
    return padded[:, left:left + length]


class _FastErosion(torch.autograd.Function):
    """The fast erosion ``(N, T) -> (N, T)`` (k >= 2) with border value ``fill`` (+inf geodesic, 0 zero): doubling
    forward, scatter-to-first-minimum backward.

    The same gradient as ``gather(padded, argmin)`` under autograd, without the gather and the padding's backward.
    """

    @staticmethod
    def forward(ctx, masks, kernel_size, fill):
        left = kernel_size // 2  # kornia's origin
        padded = F.pad(masks, (left, kernel_size - 1 - left), value=fill)
        eroded, offsets = _window_min(padded, kernel_size, track=ctx.needs_input_grad[0])
        ctx.save_for_backward(offsets)
        ctx.kernel_size = kernel_size
        return eroded

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (offsets,) = ctx.saved_tensors
        return _scatter_to_argmin(grad, offsets, ctx.kernel_size), None, None


def boundary_band(masks: torch.Tensor, kernel_size: int = 7, backend: str = "fast",
                  valid: torch.Tensor | None = None, dim: int = -1, border: str = "geodesic") -> torch.Tensor:
    """The boundary band Phi(m) = m - erosion(m, k) of soft masks (TAGS supp. Eq. 1-2), same shape as ``masks``.

    masks ``(..., T)`` (time axis ``dim``) -> ``(..., T)``. For a binary mask the band holds the foreground snippets
    within k//2 of a start or an end. ``border="geodesic"`` (default): only starts and ends inside the video count,
    so a mask that fills the whole video has an empty band and one that runs to the video's end has no band there;
    ``border="zero"``: the video's edges count too (outside is background), as in the Boundary IoU metric. With
    ``border="geodesic"``, once k >= 2T - 1 the erosion is the global minimum, so Phi(m) = m - min(m), which is m
    itself for a mask that touches 0 somewhere: bIoU becomes plain IoU (with the zero border, for every mask).
    """
    masks, _, valid = _check_masks(masks, valid=valid, dim=dim)
    band = masks - _erode(masks, kernel_size, backend, valid, border)
    return _masked(band, valid).movedim(-1, dim)


# ------------------------------------------------------------------------------------------------------ mask losses
def soft_iou(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None = None,
             eps: float = GSMT_EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft IoU along the last axis: ``(I + eps) / (U + eps)`` with I = sum(a*b), U = sum(a + b - a*b).

    a, b ``(..., T)`` -> (iou, intersection, union), each ``(...)``. Two empty masks have IoU 1 (loss 0).
    """
    return _soft_iou(_masked(a, valid), _masked(b, valid), eps)


def _soft_iou(a: torch.Tensor, b: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    inter = (a * b).sum(-1)
    union = a.sum(-1) + b.sum(-1) - inter  # sum(a + b - a*b) without two more full-size tensors
    return (inter + eps) / (union + eps), inter, union


def iou_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, dim: int = -1,
             reduction: str = "mean", eps: float = GSMT_EPS) -> torch.Tensor:
    """Soft IoU loss ``1 - |P n G| / |P u G|`` of whole masks ``(..., T)``; the L_IOU of TAGS supp. Table 2."""
    pred, target, valid = _check_masks(pred, target, valid, dim, probabilities=True)
    return _reduce(1 - soft_iou(pred, target, valid, eps)[0], valid, reduction)


def biou_loss(pred: torch.Tensor, target: torch.Tensor, kernel_size: int = 7, valid: torch.Tensor | None = None,
              dim: int = -1, reduction: str = "mean", backend: str = "fast", use_biou: bool = True,
              l2_penalty: bool = True, eps: float = GSMT_EPS, border: str = "geodesic") -> torch.Tensor:
    """Boundary-IoU loss with its L2 penalty (TAGS supp. Eq. 2-4): ``1 - bIoU(P, G) + lambda * L2(P, G)``.

    pred, target ``(..., T)`` soft masks (time axis ``dim``) -> ``(...)`` under ``reduction="none"``, else a scalar.

    - bIoU = |Phi(G) n Phi(P)| / |Phi(G) u Phi(P)|, soft intersection and union of the boundary bands (Eq. 2);
      ``border`` (``"geodesic"`` or ``"zero"``, see :func:`boundary_band`) says whether the video's edges are
      boundaries: with ``"geodesic"`` a prediction that runs past a target's end to the video's end has no band
      there, and bIoU does not see where it ends;
    - lambda = 1 / (|Phi(G) n Phi(P)| + eps), eps = e^-8 (Eq. 3 as GSMT Eq. 6 prints it: the inverse of the band
      overlap, so the penalty takes over when the bands do not meet and bIoU has no gradient);
    - L2 = ||P - G||_2 / c, the Euclidean distance of the masks over the valid snippets divided by the ground-truth
      foreground count c = sum(G) (clamped to >= 1 for an empty target), as in GSMT Eq. 6.

    Our reading: lambda is a coefficient (the paper calls it one), so it is detached; its own gradient would be
    L2 / (overlap + eps)^2, up to e^16 * L2 when the bands do not meet. ``use_biou`` and ``l2_penalty`` switch the
    two parts (at least one must be on). The fast backend computes the loss and its gradient in one
    :class:`_FastMaskLoss`; the kornia backend lets autograd differentiate the formulas.

    The penalty is always on (GSMT: "in case of no boundary overlap ... we use the normalized L2 loss"; Eq. 6 has no
    switch): every mask pays lambda * L2, lightly while the bands overlap, and with lambda at its cap 1/eps = e^8 =
    2981 once they do not, where the soft band of a prediction is often *exactly* 0 (a prediction flat within k//2
    of the target's boundaries). Hand-made (checked in tests/test_losses.py): T = 100, target [40, 60), k = 7,
    prediction sigmoid(+-4) of the target shifted by s snippets: s = 2 (IoU 0.76) gives band overlap 1.93,
    lambda 0.52, lambda * L2 = 0.05, loss 0.86; s = 3 (IoU 0.69) gives overlap 0, lambda 2981, lambda * L2 = 359.5,
    loss 360.5. How often a trained model's columns sit at the cap is what :func:`tadlab.diagnostics.mask_quality`
    measures (``lambda_at_cap``, ``lambda_median``). The per-mask lambda is
    ``1 / ((boundary_band(pred, k) * boundary_band(target, k)).sum(-1) + GSMT_EPS)``.

    eps: GSMT prints eps = e^-8 (3.4e-4). Neither public release (GSM, TAGS) trains with bIoU (their mask losses are
    a weighted BCE + dice; TAGS defines a binary ``boundary_iou`` metric it does not train with), so no code fixes
    it; 1e-8, the usual stability constant, may be what e^-8 typesets. We use the printed e^-8
    (:data:`GSMT_EPS`): it bounds lambda by e^8 = 2981, where 1e-8 would allow 1e8.
    """
    pred, target, valid = _check_masks(pred, target, valid, dim, probabilities=True)
    return _reduce(_region_loss(pred, target, valid, kernel_size, backend, use_biou, l2_penalty, 0.0, eps, border),
                   valid, reduction)


def _region_loss(pred, target, valid, kernel_size, backend, use_biou, l2_penalty, lambda2, eps,
                 border="geodesic", dice_form="vnet") -> torch.Tensor:
    """Per-mask ``[1 - bIoU] + [lambda * L2] + lambda2 * dice`` on checked inputs ``(..., T)`` -> ``(...)``."""
    if not (use_biou or l2_penalty):
        raise ValueError("biou_loss needs use_biou or l2_penalty (or both) to be True, got both False")
    check_choice("backend", backend, BACKENDS)
    kernel_size = _check_kernel_size(kernel_size)
    fill, dice_factor = _border_value(border), _dice_factor(dice_form)
    if backend == "fast" and not target.requires_grad:
        length = pred.shape[-1]
        flat_valid = None if valid is None else valid.reshape(-1, length)
        per_mask = _FastMaskLoss.apply(pred.reshape(-1, length), target.reshape(-1, length), flat_valid,
                                       kernel_size, use_biou, l2_penalty, lambda2, eps, fill, dice_factor)
        return per_mask.reshape(pred.shape[:-1])
    band_pred = _masked(pred - _erode(pred, kernel_size, backend, valid, border), valid)
    band_target = _masked(target - _erode(target, kernel_size, backend, valid, border), valid)
    biou, overlap, _ = _soft_iou(band_pred, band_target, eps)
    loss = 1 - biou if use_biou else torch.zeros_like(biou)
    pred, target = _masked(pred, valid), _masked(target, valid)
    if l2_penalty:
        weight = 1 / (overlap.detach() + eps)
        distance = torch.linalg.vector_norm(pred - target, dim=-1)  # gradient 0 at P == G
        loss = loss + weight * distance / target.sum(-1).clamp(min=1)
    if lambda2:
        loss = loss + lambda2 * _dice(pred, target, eps, dice_factor)
    return loss


class _FastMaskLoss(torch.autograd.Function):
    """Per-mask ``[1 - bIoU] + [lambda * L2] + lambda2 * dice`` (the fast path) with its gradient by hand.

    pred, target ``(N, T)``, valid ``(N, T)`` bool or None -> ``(N,)``; ``fill``: the erosion's border value (+inf
    geodesic, 0 zero); ``dice_factor``: 2 (V-Net dice) or 1 (the printed form). The forward reduces every mask to
    eight sums
    (:data:`tadlab.mask_kernels.SUM_COLUMNS`) and keeps the offsets of the erosion's first minima;
    :func:`_loss_and_factors` turns the sums into the loss and five per-mask factors of its gradient, from which the
    backward rebuilds the gradient in one pass. On a CPU the two passes are compiled kernels
    (:mod:`tadlab.mask_kernels`); elsewhere they are PyTorch ops. Same values and gradients as :func:`_region_loss`
    with the kornia backend (checked in tests/test_losses.py, incl. ``gradcheck``); no double backward.
    """

    @staticmethod
    def forward(ctx, pred, target, valid, kernel_size, use_biou, l2_penalty, lambda2, eps, fill, dice_factor):
        compiled = _use_compiled_kernels(pred)
        band_target = None  # the compiled backward recomputes it
        if compiled:
            sums, offsets = mask_kernels.mask_sums(pred, target, valid, kernel_size, fill)
            sums = sums.to(pred.dtype)
        else:
            track = ctx.needs_input_grad[0] and use_biou  # no band gradient: no offsets needed
            sums, offsets, band_target = _mask_sums(pred, target, valid, kernel_size, track, fill)
        loss, factors = _loss_and_factors(sums, use_biou, l2_penalty, lambda2, eps, dice_factor)
        ctx.compiled, ctx.kernel_size, ctx.fill = compiled, kernel_size, fill
        ctx.save_for_backward(pred, target, band_target, offsets, valid, factors)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        pred, target, band_target, offsets, valid, factors = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 10
        factors = factors * grad_loss[:, None]
        if ctx.compiled:
            grad = mask_kernels.mask_grad(pred, target, offsets, ctx.kernel_size, valid, factors, ctx.fill)
        else:
            grad = _mask_grad(pred, target, band_target, offsets, valid, factors, ctx.kernel_size)
        return (grad,) + (None,) * 9


def _use_compiled_kernels(pred: torch.Tensor) -> bool:
    """The compiled kernels run CPU float32/float64 masks (unless :func:`compiled_kernels` switched them off)."""
    return COMPILED_KERNELS and mask_kernels.supports(pred)


@contextlib.contextmanager
def compiled_kernels(enabled: bool):
    """Within the block, the fast path on a CPU runs the compiled kernels (``enabled``) or the PyTorch ops that other
    devices run; tests and benchmarks compare the two engines this way. The forward picks the engine, and its
    backward follows it even outside the block."""
    global COMPILED_KERNELS
    saved, COMPILED_KERNELS = COMPILED_KERNELS, bool(enabled)
    try:
        yield
    finally:
        COMPILED_KERNELS = saved


def _loss_and_factors(sums, use_biou, l2_penalty, lambda2, eps, dice_factor=2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask sums ``(N, 8)`` -> the loss ``(N,)`` and the factors ``(N, 5)`` of its gradient by P at a snippet:

    ``a + f2 (P - G) + f3 G + f4 P`` with ``a = f0 + f1 Phi(G)``, minus ``a`` of the snippets whose erosion window
    has its first minimum there (the band is P minus the erosion).
    """
    band_intersection, band_pred, band_target, squared_distance, target, pred_target, pred_squared, target_squared = \
        sums.unbind(1)
    zero = torch.zeros_like(band_intersection)
    loss, factors = zero, [zero] * 5
    if use_biou:  # d(1 - bIoU)/d Phi(P) = bIoU/(U+eps) - (bIoU + 1)/(U+eps) * Phi(G)
        union = band_pred + band_target - band_intersection
        biou = (band_intersection + eps) / (union + eps)
        loss = 1 - biou
        factors[0], factors[1] = biou / (union + eps), -(biou + 1) / (union + eps)
    if l2_penalty:  # lambda = 1/(band overlap + eps) is a coefficient; d||x||/dx = x/||x||, 0 at x = 0
        distance = squared_distance.sqrt()
        weight, count = 1 / (band_intersection + eps), target.clamp(min=1)
        loss = loss + weight * distance / count
        factors[2] = torch.where(distance > 0, weight / count / distance, zero)
    if lambda2:  # dice = 1 - (f I + eps)/(S + eps), f = 2 or 1
        # d dice/dP = -f G/(S + eps) + 2 (f I + eps)/(S + eps)^2 P
        sizes = pred_squared + target_squared
        loss = loss + lambda2 * (1 - (dice_factor * pred_target + eps) / (sizes + eps))
        factors[3] = -dice_factor * lambda2 / (sizes + eps)
        factors[4] = 2 * lambda2 * (dice_factor * pred_target + eps) / (sizes + eps) ** 2
    return loss, torch.stack(factors, 1)


def _mask_sums(pred, target, valid, kernel_size, track, fill=math.inf):
    """PyTorch twin of :func:`tadlab.mask_kernels.mask_sums`: sums ``(N, 8)``, erosion window offsets of the first
    minima ``(N, T)`` (:func:`_window_min`; None for k = 1 or without ``track``) and the target's band ``(N, T)``.
    ``fill``: the border value, +inf (geodesic) or 0 (zero)."""
    left = kernel_size // 2
    pad = (left, kernel_size - 1 - left)  # kornia's origin k//2
    outside = None if valid is None else ~valid

    def band(masks, track):
        inside = masks if outside is None else masks.masked_fill(outside, fill)
        eroded, offsets = _window_min(F.pad(inside, pad, value=fill), kernel_size, track)
        masks_band = masks - eroded
        return (masks_band if outside is None else masks_band.masked_fill_(outside, 0)), offsets

    band_pred, offsets = band(pred, track)
    band_target, _ = band(target, False)
    if outside is not None:
        pred, target = pred.masked_fill(outside, 0), target.masked_fill(outside, 0)
    difference = pred - target
    sums = torch.stack([(band_pred * band_target).sum(-1), band_pred.sum(-1), band_target.sum(-1),
                        (difference * difference).sum(-1), target.sum(-1), (pred * target).sum(-1),
                        (pred * pred).sum(-1), (target * target).sum(-1)], 1)
    return sums, offsets, band_target


def _mask_grad(pred, target, band_target, offsets, valid, factors, kernel_size):
    """PyTorch twin of :func:`tadlab.mask_kernels.mask_grad` -> ``grad (N, T)`` (what reaches the border or an
    invalid snippet through the erosion is dropped)."""
    factors = factors[:, :, None].unbind(1)
    grad = torch.addcmul(factors[0], band_target, factors[1])  # the derivative by the predicted band
    if valid is not None:
        grad.masked_fill_(~valid, 0)  # the band is 0 there whatever pred is
    if offsets is not None:  # (None: k = 1, the band is identically 0, or no bIoU term)
        grad -= _scatter_to_argmin(grad, offsets, kernel_size)
    else:
        grad.zero_()
    grad.addcmul_(pred - target, factors[2]).addcmul_(target, factors[3]).addcmul_(pred, factors[4])
    if valid is not None:
        grad.masked_fill_(~valid, 0)
    return grad


def _dice(pred: torch.Tensor, target: torch.Tensor, eps: float, factor: float = 2.0) -> torch.Tensor:
    """Per-mask dice loss ``1 - (factor I + eps)/(S + eps)`` of masked inputs ``(..., T)`` -> ``(...)``; factor 2 is
    the V-Net form, 1 the form GSMT Eq. 6 prints."""
    inter = (pred * target).sum(-1)
    sizes = (pred * pred).sum(-1) + (target * target).sum(-1)
    return 1 - (factor * inter + eps) / (sizes + eps)


def dice_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, dim: int = -1,
              reduction: str = "mean", eps: float = GSMT_EPS, form: str = "vnet") -> torch.Tensor:
    """Dice loss of masks ``(..., T)``, by default the V-Net form ``1 - (2 sum(P*G) + eps) / (sum(P^2) + sum(G^2) +
    eps)`` (Milletari et al. 2016).

    ``form``: ``"vnet"`` (default, tadlab's choice) or ``"printed"``, the form GSMT Eq. 6 prints and the authors'
    released ``BinaryDiceLoss`` computes: ``1 - (sum(P*G) + eps) / (sum(P^2) + sum(G^2) + eps)``, without the
    factor 2, so a perfect non-empty mask scores 0.5 instead of 0 (the release adds 1 rather than eps, over a video's
    whole T x T mask matrix rather than per column). The printed form is ``(1 + vnet) / 2`` up to eps: the same
    minimiser, half the gradient. Two empty masks score 0 under both.
    """
    pred, target, valid = _check_masks(pred, target, valid, dim, probabilities=True)
    return _reduce(_dice(_masked(pred, valid), _masked(target, valid), eps, _dice_factor(form)), valid, reduction)


def mask_loss(pred: torch.Tensor, target: torch.Tensor, variant: str = "biou", kernel_size: int = 7,
              lambda2: float = 0.4, valid: torch.Tensor | None = None, dim: int = -1, reduction: str = "mean",
              backend: str = "fast", l2_penalty: bool | None = None, eps: float = GSMT_EPS,
              border: str = "geodesic", dice_form: str = "vnet") -> torch.Tensor:
    """The GSMT mask loss (Eq. 6) and the variants of its ablations, on soft masks ``(..., T)``.

    - ``"biou"`` (default, Eq. 6): ``biou_loss(k, with the lambda*L2 penalty) + lambda2 * dice_loss``;
    - ``"iou"`` (TAGS supp. Table 2, L_dice + L_IOU): ``iou_loss + lambda2 * dice_loss``;
    - ``"bce"``: plain binary cross-entropy averaged over the valid snippets of each mask (TAGS supp. Table 5 uses
      BMN's weighted BCE; this is the unweighted one).
    Returns ``(...)`` under ``reduction="none"``, else a scalar.

    ``l2_penalty``: None (default) gives each variant its published form (on for ``"biou"``, off for ``"iou"``);
    True or False switches the lambda * L2 term of TAGS supp. Eq. 3 for ``"biou"`` and ``"iou"`` alike, with the
    same lambda = 1 / (|Phi(G) n Phi(P)| + eps) (the band overlap at ``kernel_size``). So ``"iou"`` with the penalty
    differs from ``"biou"`` with it in one thing only, IoU of the whole masks instead of IoU of their boundary bands,
    and the penalty's effect can be measured apart from the band's (not a variant of the papers). ``"bce"`` has no
    penalty (True is an error).

    ``border`` (``"geodesic"`` or ``"zero"``: is the video's edge a boundary? see :func:`boundary_band`) applies
    wherever a band is used (bIoU, and lambda); ``dice_form`` (``"vnet"``, tadlab's choice, or ``"printed"``, Eq. 6
    as printed and released; see :func:`dice_loss`) to the dice term of ``"biou"`` and ``"iou"``.

    ``backend="fast"`` (the default, for training) computes the bIoU variant in one :class:`_FastMaskLoss`: two
    compiled passes on a CPU (:mod:`tadlab.mask_kernels`), PyTorch ops elsewhere; ``"kornia"`` differentiates the
    formulas with autograd through ``kornia.morphology.erosion``, the paper's code path. Both give the same values
    and gradients (to float rounding).
    """
    if l2_penalty is not None and not isinstance(l2_penalty, bool):
        raise TypeError(f"l2_penalty must be None, True or False, got {type(l2_penalty).__name__} {l2_penalty!r}")
    if variant == "bce" and l2_penalty:
        raise ValueError("l2_penalty=True needs variant 'biou' or 'iou'; 'bce' has no lambda * L2 penalty")
    check_choice("variant", variant, MASK_VARIANTS)
    _border_value(border), _dice_factor(dice_form)  # checked whatever the variant uses
    pred, target, valid = _check_masks(pred, target, valid, dim, probabilities=True)
    if variant == "bce":
        # clamping one machine epsilon inside (0, 1) keeps saturated predictions finite in value and gradient
        tiny = torch.finfo(pred.dtype).eps
        per_snippet = _masked(F.binary_cross_entropy(pred.clamp(tiny, 1 - tiny), target, reduction="none"), valid)
        count = pred.shape[-1] if valid is None else valid.sum(-1).clamp(min=1)
        return _reduce(per_snippet.sum(-1) / count, valid, reduction)
    if variant == "biou":
        per_mask = _region_loss(pred, target, valid, kernel_size, backend, True, l2_penalty is not False, lambda2, eps,
                                border, dice_form)
    elif l2_penalty:  # IoU of the whole masks + the band-overlap lambda * L2 + dice (the last two as in "biou")
        whole = 1 - _soft_iou(_masked(pred, valid), _masked(target, valid), eps)[0]
        per_mask = whole + _region_loss(pred, target, valid, kernel_size, backend, False, True, lambda2, eps,
                                        border, dice_form)
    else:
        pred, target = _masked(pred, valid), _masked(target, valid)
        per_mask = 1 - _soft_iou(pred, target, eps)[0] + lambda2 * _dice(pred, target, eps, _dice_factor(dice_form))
    return _reduce(per_mask, valid, reduction)
