"""Compiled CPU kernels (numba) behind the fast path of the bIoU mask loss (:func:`tadlab.losses.mask_loss`).

On a CPU, PyTorch runs the fused loss as some 25 separate passes over the masks (erosion by doubling, bands, eight
sums, the backward's scatter), each a full trip through memory. These two kernels do the same work in one pass per
mask row each way: :func:`mask_sums` for the forward, :func:`mask_grad` for the backward. The formulas that turn
the sums into the loss and its per-mask gradient factors stay in ``tadlab.losses``, shared with the PyTorch path
(used on other devices), and the tests check both against the kornia path.

Rows are masks ``(N, T)``, float32 or float64, C-contiguous; ``valid`` is an ``(N, T)`` bool array or None.
The erosion is kornia's: window ``[t - k//2, t - k//2 + k)``, gradient to the window's first minimum. Outside the
video and at invalid snippets the windows see ``border_value``: ``+inf`` for the geodesic border (they are
ignored; the default) or ``0`` for the zero border (background, so the video's edge is a boundary); a first
minimum that falls there takes its gradient with it.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

# columns of the per-mask sums, over valid snippets; bands are Phi(m) = m - erosion(m, k)
SUM_COLUMNS = ("band_intersection", "band_pred", "band_target", "squared_distance", "target", "pred_target",
               "pred_squared", "target_squared")


# reassociation lets the compiler vectorise the sums (1.5x faster kernels), so their rounding follows the CPU's vector
# width, as PyTorch's own reductions do; no "nnan"/"ninf": +inf pads the erosion windows
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _pad_row(masks, n, valid, has_valid, left, fill, padded):
    """Row n of ``masks`` into ``padded`` (length T + k - 1) at offset k//2; ``fill`` at the border and invalid
    snippets."""
    length = masks.shape[1]
    for t in range(padded.shape[0]):
        padded[t] = fill
    for t in range(length):
        if not has_valid or valid[n, t]:
            padded[left + t] = masks[n, t]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _erode_row(padded, kernel_size, eroded, offset):
    """Window minima of a padded row, ``eroded[t] = min(padded[t:t + k])``, and the offset of the first minimum."""
    for t in range(eroded.shape[0]):
        eroded[t] = padded[t]
        offset[t] = 0
    for o in range(1, kernel_size):  # offset by offset: branch-free selects over t, which the compiler vectorises
        for t in range(eroded.shape[0]):
            value = padded[t + o]
            smaller = value < eroded[t]  # strict: a tie keeps the first minimum
            eroded[t] = value if smaller else eroded[t]
            offset[t] = o if smaller else offset[t]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _erode_row_values(padded, kernel_size, eroded):
    """:func:`_erode_row` without the offsets (the target's erosion passes no gradient)."""
    for t in range(eroded.shape[0]):
        eroded[t] = padded[t]
    for o in range(1, kernel_size):
        for t in range(eroded.shape[0]):
            eroded[t] = min(eroded[t], padded[t + o])


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _sums_kernel(pred, target, valid, has_valid, kernel_size, fill, sums, offsets):
    rows, length = pred.shape
    left = kernel_size // 2
    padded_pred = np.empty(length + kernel_size - 1, pred.dtype)
    padded_target = np.empty(length + kernel_size - 1, pred.dtype)
    eroded_pred = np.empty(length, pred.dtype)
    eroded_target = np.empty(length, pred.dtype)
    offset = np.empty(length, np.int32)
    for n in range(rows):
        _pad_row(pred, n, valid, has_valid, left, fill, padded_pred)
        _pad_row(target, n, valid, has_valid, left, fill, padded_target)
        _erode_row(padded_pred, kernel_size, eroded_pred, offset)
        _erode_row_values(padded_target, kernel_size, eroded_target)
        band_intersection = band_pred = band_sum = 0.0
        squared_distance = target_sum = pred_target = pred_squared = target_squared = 0.0
        for t in range(length):
            offsets[n, t] = offset[t]
            inside = not has_valid or valid[n, t]
            p = pred[n, t] if inside else 0.0
            g = target[n, t] if inside else 0.0
            p_band = p - eroded_pred[t] if inside else 0.0
            g_band = g - eroded_target[t] if inside else 0.0
            band_intersection += p_band * g_band
            band_pred += p_band
            band_sum += g_band
            squared_distance += (p - g) * (p - g)
            target_sum += g
            pred_target += p * g
            pred_squared += p * p
            target_squared += g * g
        sums[n, 0], sums[n, 1], sums[n, 2], sums[n, 3] = band_intersection, band_pred, band_sum, squared_distance
        sums[n, 4], sums[n, 5], sums[n, 6], sums[n, 7] = target_sum, pred_target, pred_squared, target_squared


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _grad_kernel(pred, target, offsets, kernel_size, valid, has_valid, fill, factors, grad):
    rows, length = pred.shape
    left = kernel_size // 2
    padded_target = np.empty(length + kernel_size - 1, pred.dtype)
    eroded_target = np.empty(length, pred.dtype)
    through_band = np.empty(length, pred.dtype)
    for n in range(rows):
        band_constant, band_slope = factors[n, 0], factors[n, 1]
        on_difference, on_target, on_pred = factors[n, 2], factors[n, 3], factors[n, 4]
        # the target's band again: recomputing it costs less than keeping a full-size tensor for the backward
        _pad_row(target, n, valid, has_valid, left, fill, padded_target)
        _erode_row_values(padded_target, kernel_size, eroded_target)
        for t in range(length):
            inside = not has_valid or valid[n, t]
            p, g = pred[n, t], target[n, t]
            band = band_constant + band_slope * (g - eroded_target[t])  # d loss / d Phi(P)[t]
            through_band[t] = band if inside else 0.0
            grad[n, t] = band + on_difference * (p - g) + on_target * g + on_pred * p if inside else 0.0
        for t in range(length):  # the band subtracts the erosion, whose gradient goes to the window's first minimum
            source = t - left + offsets[n, t]  # geodesic: a valid snippet (the window holds itself, finite)
            # zero border: the minimum may be the border or an invalid snippet (a constant 0): no gradient there
            if (not has_valid or valid[n, t]) and 0 <= source < length and (not has_valid or valid[n, source]):
                grad[n, source] -= through_band[t]


def supports(tensor: torch.Tensor) -> bool:
    """Whether the kernels take ``tensor``: on the CPU, float32 or float64."""
    return tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64)


def _valid_array(valid: torch.Tensor | None) -> tuple[np.ndarray, bool]:
    if valid is None:
        return np.ones((1, 1), np.bool_), False  # never read
    return valid.contiguous().numpy(), True


def mask_sums(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None, kernel_size: int,
              border_value: float = math.inf):
    """The forward pass: per-mask sums ``(N, 8)`` (float64, :data:`SUM_COLUMNS`) and the offset of each snippet's
    first minimum in its erosion window ``[t - k//2, t - k//2 + k)`` ``(N, T)`` (uint8, int32 for k > 256).

    pred, target ``(N, T)`` CPU float32/float64 of one dtype; valid ``(N, T)`` bool or None; ``border_value``:
    +inf (geodesic border) or 0 (zero border).
    """
    pred, target = pred.detach().contiguous(), target.detach().contiguous()
    valid_array, has_valid = _valid_array(valid)
    # outputs come from torch's allocator: numpy's fresh large arrays cost page faults on every call
    sums = torch.empty(pred.shape[0], len(SUM_COLUMNS), dtype=torch.float64)
    offsets = torch.empty(pred.shape, dtype=torch.uint8 if kernel_size <= 256 else torch.int32)
    _sums_kernel(pred.numpy(), target.numpy(), valid_array, has_valid, kernel_size, float(border_value), sums.numpy(),
                 offsets.numpy())
    return sums, offsets


def mask_grad(pred: torch.Tensor, target: torch.Tensor, offsets: torch.Tensor, kernel_size: int,
              valid: torch.Tensor | None, factors: torch.Tensor, border_value: float = math.inf) -> torch.Tensor:
    """The backward pass: ``grad (N, T)`` of per-mask losses whose gradient factors are ``factors (N, 5)``.

    For a valid snippet t of mask n, with ``a = factors[n, 0] + factors[n, 1] * Phi(G)[n, t]`` (the loss's
    derivative by the predicted band there): ``grad[n, t] += a + factors[n, 2] * (P - G) + factors[n, 3] * G +
    factors[n, 4] * P`` and ``grad[n, t - k//2 + offsets[n, t]] -= a`` (the band subtracts the erosion, whose
    gradient goes to the window's first minimum, unless that is the border or an invalid snippet). Invalid snippets
    get 0. ``border_value`` as in :func:`mask_sums`.
    """
    pred = pred.detach().contiguous()
    valid_array, has_valid = _valid_array(valid)
    grad = torch.empty_like(pred)
    _grad_kernel(pred.numpy(), target.detach().contiguous().numpy(), offsets.numpy(), kernel_size, valid_array,
                 has_valid, float(border_value), factors.to(pred.dtype).contiguous().numpy(), grad.numpy())
    return grad
