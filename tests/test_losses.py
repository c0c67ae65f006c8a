"""Tests for tadlab.losses: bIoU / IoU / dice / GSMT mask loss, the two erosion backends, Eq. 5 losses."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tadlab.losses
from tadlab import mask_kernels
from tadlab.losses import (
    GSMT_EPS,
    biou_loss,
    boundary_band,
    class_balanced_logistic_loss,
    classification_loss,
    compiled_kernels,
    dice_loss,
    erosion_1d,
    focal_loss,
    iou_loss,
    mask_loss,
    sigmoid_focal_loss,
)

BACKENDS = ["fast", "kornia"]
BORDERS = ["geodesic", "zero"]


def engine_settings(max_examples):
    """Hypothesis settings for tests that use ``fast_engine``: set once per test, not reset between examples."""
    return settings(deadline=None, max_examples=max_examples,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=["compiled", "torch"])
def fast_engine(request):
    """Run a test with each engine of the fast path on the CPU: the compiled kernels (the CPU default) and the
    PyTorch ops that other devices run."""
    with compiled_kernels(request.param == "compiled"):
        yield request.param


def interval_masks(length, intervals, dtype=torch.float64):
    """Binary masks (N, T) from (start, end) pairs."""
    masks = torch.zeros(len(intervals), length, dtype=dtype)
    for row, (start, end) in enumerate(intervals):
        masks[row, start:end] = 1
    return masks


binary_masks = st.integers(4, 40).flatmap(
    lambda length: st.lists(st.tuples(st.integers(0, length), st.integers(0, length)), min_size=1, max_size=4).map(
        lambda pairs: interval_masks(length, [(min(a, b), max(a, b)) for a, b in pairs])))


# ------------------------------------------------------------------------------------------------ erosion and band
def test_boundary_band_of_an_interval_by_hand():
    mask = interval_masks(12, [(2, 9)])[0]
    expected = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0], dtype=mask.dtype)  # k=5: 2 snippets each side
    for backend in BACKENDS:
        assert torch.equal(boundary_band(mask, 5, backend), expected)
        # geodesic border: a mask filling the video has no boundary; one touching the start has only its end
        assert torch.equal(boundary_band(torch.ones(12), 5, backend), torch.zeros(12))
        assert boundary_band(interval_masks(12, [(0, 6)])[0], 5, backend).tolist() == [0, 0, 0, 0, 1, 1] + [0] * 6
        # zero border: outside the video is background, so the video's edges are boundaries too
        assert torch.equal(boundary_band(mask, 5, backend, border="zero"), expected)  # inside: no difference
        assert boundary_band(torch.ones(12), 5, backend, border="zero").tolist() == [1, 1] + [0] * 8 + [1, 1]
        touching_start = boundary_band(interval_masks(12, [(0, 6)])[0], 5, backend, border="zero")
        assert touching_start.tolist() == [1, 1, 0, 0, 1, 1] + [0] * 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_the_two_borders_differ_by_hand(backend):
    """T = 8, k = 3, target [2, 5), a prediction [2, 8) that runs on to the video's end. Geodesic border: the
    prediction's band is {2} (its end is the video's, not a boundary), the target's {2, 4}: bIoU 1/2, better than
    the 1/3 of a prediction [2, 7) that stops short of the video's end. Zero border: the prediction's band is
    {2, 7}: bIoU 1/3, as for [2, 7)."""
    target = interval_masks(8, [(2, 5)])[0]
    pred = interval_masks(8, [(2, 8)])[0]
    assert boundary_band(target, 3, backend).tolist() == [0, 0, 1, 0, 1, 0, 0, 0]
    assert boundary_band(target, 3, backend, border="zero").tolist() == [0, 0, 1, 0, 1, 0, 0, 0]
    assert boundary_band(pred, 3, backend).tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert boundary_band(pred, 3, backend, border="zero").tolist() == [0, 0, 1, 0, 0, 0, 0, 1]
    geodesic = biou_loss(pred, target, 3, backend=backend, l2_penalty=False)
    zero = biou_loss(pred, target, 3, backend=backend, l2_penalty=False, border="zero")
    torch.testing.assert_close(geodesic, torch.tensor(1 - (1 + GSMT_EPS) / (2 + GSMT_EPS), dtype=torch.float64))
    torch.testing.assert_close(zero, torch.tensor(1 - (1 + GSMT_EPS) / (3 + GSMT_EPS), dtype=torch.float64))
    # a prediction [2, 7) that stops one snippet short of the video's end has band {2, 6} under both borders, bIoU
    # 1/3: the geodesic border scores the prediction that runs further past the target's end *better* (1/2)
    short = interval_masks(8, [(2, 7)])[0]
    for border in BORDERS:
        torch.testing.assert_close(biou_loss(short, target, 3, backend=backend, l2_penalty=False, border=border),
                                   zero)
    # the mask loss and its lambda follow the border: overlap 1 either way here, so only bIoU changes
    for border, biou in (("geodesic", geodesic), ("zero", zero)):
        penalty = 1 / (1 + GSMT_EPS) * (pred - target).norm() / 3
        torch.testing.assert_close(mask_loss(pred, target, kernel_size=3, backend=backend, border=border),
                                   biou + penalty + 0.4 * dice_loss(pred, target))


def test_compiled_kernel_sums_with_the_zero_border_by_hand():
    """The example of test_compiled_kernel_sums_by_hand with the zero border: the first and last windows now hold
    a 0 from outside the video, which is their first minimum (positions -1 and 5, outside the row)."""
    pred = torch.tensor([[0.2, 0.9, 0.5, 0.7, 0.1]], dtype=torch.float64)
    target = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    sums, offsets = mask_kernels.mask_sums(pred, target, None, 3, border_value=0.0)
    # eroded pred [0, 0.2, 0.5, 0.1, 0] -> band [0.2, 0.7, 0, 0.6, 0.1]; the target's band is unchanged [0, 1, 0, 1, 0]
    assert (offsets.long() + torch.arange(5) - 1).tolist() == [[-1, 0, 2, 4, 5]]
    expected = dict(band_intersection=1.3, band_pred=1.6, band_target=2, squared_distance=0.4, target=3,
                    pred_target=2.1, pred_squared=1.6, target_squared=3)
    torch.testing.assert_close(sums[0], torch.tensor([expected[c] for c in mask_kernels.SUM_COLUMNS],
                                                     dtype=torch.float64), atol=1e-12, rtol=0)
    # backward: d(sum of the band)/d pred = 1 at every snippet, minus 1 for each window whose first minimum it is;
    # the border's minima take theirs nowhere. Snippet 0 is the minimum of window 1, 2 of 2, 4 of 3.
    factors = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)  # the loss = sum of the band
    grad = mask_kernels.mask_grad(pred, target, offsets, 3, None, factors, border_value=0.0)
    assert grad.tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]]
    leaf = pred.clone().requires_grad_()
    boundary_band(leaf, 3, "kornia", border="zero").sum().backward()
    assert leaf.grad.tolist() == grad.tolist()


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 7, 8, 25, 61, 300])  # 300: offsets past uint8
def test_fast_and_kornia_agree_in_value_and_gradient(kernel_size, border):
    generator = torch.Generator().manual_seed(kernel_size)
    # continuous values, plus quantised ones with ties, plus exact 0/1 plateaus
    soft = torch.rand(3, 5, 30, generator=generator, dtype=torch.float64)
    quantised = (soft * 4).round() / 4
    for masks in (soft, quantised):
        grad_out = torch.randn(masks.shape, generator=generator, dtype=torch.float64)
        results = []
        for backend in BACKENDS:
            leaf = masks.clone().requires_grad_()
            band = boundary_band(leaf, kernel_size, backend, border=border)
            (grad,) = torch.autograd.grad((band * grad_out).sum(), leaf)
            results.append((band, grad))
        torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=0)


@pytest.mark.usefixtures("fast_engine")
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("variant", ["biou", "iou", "bce"])
def test_mask_loss_backends_agree_float32_with_valid(variant, border):
    generator = torch.Generator().manual_seed(1)
    pred = torch.rand(4, 20, 20, generator=generator)
    target = (torch.rand(4, 20, 20, generator=generator) > 0.6).float()
    valid = torch.rand(4, 1, 20, generator=generator) > 0.2
    results = []
    for backend in BACKENDS:
        leaf = pred.clone().requires_grad_()
        loss = mask_loss(leaf, target, variant, valid=valid, backend=backend, border=border)
        results.append((loss, *torch.autograd.grad(loss, leaf)))
    # the loss is ~88 here (lambda * L2 of columns whose bands do not meet), where one float32 step is ~8e-6
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-6)
    # the gradient reaches ~10 here (lambda = 1/band overlap), where one float32 step is ~1e-6, and the compiled
    # kernels sum in float64: agreement to 1e-6 relative (float64 agrees to 1e-10, in the tests below)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-6)


@pytest.mark.usefixtures("fast_engine")
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("kernel_size", [1, 2, 7, 8, 300])
@pytest.mark.parametrize("use_biou, l2_penalty, lambda2", [(True, True, 0.4), (True, False, 0.0), (False, True, 0.0),
                                                          (False, True, 0.4), (True, False, 0.4)])
def test_fused_fast_loss_matches_autograd_in_float64(kernel_size, use_biou, l2_penalty, lambda2, border):
    """The analytic backward of the fast path against autograd on the kornia path: ties (exact zeros among them, so
    with the zero border the outside often is a window's first minimum), valid snippets, dim=1."""
    generator = torch.Generator().manual_seed(kernel_size)
    pred = (torch.rand(3, 16, 16, generator=generator, dtype=torch.float64) * 4).round() / 4  # many ties
    pred[0, :, :5] = torch.rand(16, 5, generator=generator, dtype=torch.float64)
    target = (torch.rand(3, 16, 16, generator=generator) > 0.5).double()
    valid = torch.rand(3, 1, 16, generator=generator) > 0.25
    grad_out = torch.rand(3, 16, generator=generator, dtype=torch.float64)
    results = []
    for backend in BACKENDS:
        leaf = pred.clone().requires_grad_()
        if use_biou:
            loss = mask_loss(leaf, target, "biou", kernel_size, lambda2, valid, dim=1, reduction="none",
                             backend=backend, l2_penalty=l2_penalty, border=border)
        else:
            loss = biou_loss(leaf, target, kernel_size, valid, dim=1, reduction="none", backend=backend,
                             use_biou=False, border=border) + lambda2 * dice_loss(leaf, target, valid, dim=1,
                                                                                  reduction="none")
        results.append((loss, *torch.autograd.grad((loss * grad_out).sum(), leaf)))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-10, rtol=0)


@pytest.mark.usefixtures("fast_engine")
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("kernel_size", [3, 6, 7])
@pytest.mark.parametrize("with_valid", [False, True])
def test_fused_fast_loss_passes_gradcheck(kernel_size, with_valid, border):
    """Finite differences in float64 (without the L2 penalty, whose lambda is detached by design)."""
    generator = torch.Generator().manual_seed(kernel_size)
    pred = torch.rand(2, 3, 12, generator=generator, dtype=torch.float64).requires_grad_()
    target = (torch.rand(2, 3, 12, generator=generator) > 0.5).double()
    valid = torch.arange(12) < 9 if with_valid else None

    def loss(p):
        return mask_loss(p, target, kernel_size=kernel_size, valid=valid, reduction="none", l2_penalty=False,
                         border=border)

    assert torch.autograd.gradcheck(loss, (pred,), eps=1e-7, atol=1e-6)


@pytest.mark.usefixtures("fast_engine")
def test_fast_path_without_grad_and_with_a_differentiable_target():
    generator = torch.Generator().manual_seed(3)
    pred = torch.rand(4, 20, generator=generator, dtype=torch.float64)
    target = torch.rand(4, 20, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        plain = mask_loss(pred, target, reduction="none")
    torch.testing.assert_close(plain, mask_loss(pred, target, reduction="none", backend="kornia"), atol=1e-12, rtol=0)
    # a target that needs a gradient takes the autograd path and gets the same gradient as the kornia path
    grads = []
    for backend in BACKENDS:
        leaves = pred.clone().requires_grad_(), target.clone().requires_grad_()
        grads.append(torch.autograd.grad(mask_loss(*leaves, backend=backend), leaves))
    for fast, slow in zip(*grads):
        torch.testing.assert_close(fast, slow, atol=1e-10, rtol=0)


def test_compiled_kernel_sums_by_hand():
    """k = 3, window [t-1, t+1], geodesic border: the erosion, its first minima and the eight sums worked out."""
    pred = torch.tensor([[0.2, 0.9, 0.5, 0.7, 0.1]], dtype=torch.float64)
    target = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    sums, offsets = mask_kernels.mask_sums(pred, target, None, 3)
    # eroded pred [0.2, 0.2, 0.5, 0.1, 0.1] -> band [0, 0.7, 0, 0.6, 0]
    # eroded target [0, 0, 1, 0, 0] -> band [0, 1, 0, 1, 0]
    assert (offsets.long() + torch.arange(5) - 1).tolist() == [[0, 0, 2, 4, 4]]  # the first minima
    expected = dict(band_intersection=1.3, band_pred=1.3, band_target=2, squared_distance=0.4, target=3,
                    pred_target=2.1, pred_squared=1.6, target_squared=3)
    torch.testing.assert_close(sums[0], torch.tensor([expected[c] for c in mask_kernels.SUM_COLUMNS],
                                                     dtype=torch.float64), atol=1e-12, rtol=0)


def test_compiled_kernels_serve_cpu_float32_and_float64_only():
    assert tadlab.losses._use_compiled_kernels(torch.rand(2, 5))
    assert tadlab.losses._use_compiled_kernels(torch.rand(2, 5, dtype=torch.float64))
    half = torch.rand(2, 5, 5).bfloat16().requires_grad_()
    assert not tadlab.losses._use_compiled_kernels(half)
    with compiled_kernels(False):
        assert not tadlab.losses._use_compiled_kernels(torch.rand(2, 5))
    assert tadlab.losses._use_compiled_kernels(torch.rand(2, 5))  # switched back after the block
    loss = mask_loss(half, (torch.rand(2, 5, 5) > 0.5).bfloat16())  # the PyTorch engine takes it
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(half.grad).all()


def test_erosion_rejects_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        erosion_1d(torch.rand(3, 10), 3, backend="scipy")
    with pytest.raises(ValueError, match="kernel_size"):
        erosion_1d(torch.rand(3, 10), 0)
    with pytest.raises(ValueError, match="kernel_size"):
        boundary_band(torch.rand(3, 10), 2.5)
    with pytest.raises(TypeError, match="pred must be a floating-point"):
        erosion_1d(torch.ones(3, 10, dtype=torch.long), 3)
    # a broadcast validity mask: the last 4 snippets lie outside the video
    masks = torch.rand(3, 10, dtype=torch.float64)
    cut = torch.arange(10) < 6
    torch.testing.assert_close(erosion_1d(masks, 3, valid=cut)[:, :6], erosion_1d(masks[:, :6], 3))


# ------------------------------------------------------------------------------------------------------ properties
@pytest.mark.usefixtures("fast_engine")
@engine_settings(25)
@given(binary_masks, st.sampled_from([3, 5, 7, 9]), st.sampled_from(BACKENDS), st.sampled_from(BORDERS))
def test_perfect_binary_prediction_scores_zero(target, kernel_size, backend, border):
    for loss in (biou_loss(target, target, kernel_size, backend=backend, reduction="none", border=border),
                 iou_loss(target, target, reduction="none"), dice_loss(target, target, reduction="none"),
                 mask_loss(target, target, "biou", kernel_size, backend=backend, reduction="none", border=border),
                 mask_loss(target, target, "iou", reduction="none")):
        assert torch.equal(loss, torch.zeros_like(loss))


@pytest.mark.usefixtures("fast_engine")
@engine_settings(25)
@given(binary_masks, st.integers(0, 3), st.integers(0, 2**31 - 1), st.sampled_from(BACKENDS))
def test_biou_equals_iou_for_a_kernel_covering_the_video(target, extra, seed, backend):
    """With k >= 2T + 1 the erosion is the global minimum; masks that touch 0 keep their whole area as band."""
    length = target.shape[-1]
    target[:, 0] = 0  # a mask must touch 0 somewhere, else its band is empty (the geodesic border)
    pred = torch.rand(target.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    pred[:, -1] = 0
    kernel_size = 2 * length + 1 + 2 * extra
    biou = biou_loss(pred, target, kernel_size, backend=backend, l2_penalty=False, reduction="none")
    torch.testing.assert_close(biou, iou_loss(pred, target, reduction="none"), atol=1e-12, rtol=0)
    if target.sum() > 0:  # an empty target scores ~1 under both losses whatever k is
        assert not torch.allclose(biou_loss(pred, target, 3, l2_penalty=False), iou_loss(pred, target))


@pytest.mark.usefixtures("fast_engine")
@engine_settings(25)
@given(binary_masks, st.integers(0, 3), st.integers(0, 2**31 - 1), st.sampled_from(BACKENDS))
def test_with_the_zero_border_biou_equals_iou_for_every_mask_once_k_reaches_past_the_video(target, extra, seed,
                                                                                           backend):
    """With the zero border a window of k >= 2T - 1 always holds the outside's 0: the erosion is 0 and the band the
    whole mask, even for masks that never touch 0 (the geodesic border needs that, above)."""
    length = target.shape[-1]
    target[0] = 1  # a mask that never touches 0
    pred = torch.rand(target.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    kernel_size = 2 * length - 1 + extra
    torch.testing.assert_close(boundary_band(target, kernel_size, backend, border="zero"), target, atol=0, rtol=0)
    biou = biou_loss(pred, target, kernel_size, backend=backend, l2_penalty=False, reduction="none", border="zero")
    torch.testing.assert_close(biou, iou_loss(pred, target, reduction="none"), atol=1e-12, rtol=0)


@pytest.mark.usefixtures("fast_engine")
@engine_settings(20)
@given(st.integers(5, 30), st.integers(1, 10), st.integers(0, 2**31 - 1), st.sampled_from(BACKENDS),
       st.sampled_from(BORDERS))
def test_invalid_snippets_act_as_outside_the_video(length, padding, seed, backend, border):
    generator = torch.Generator().manual_seed(seed)
    pred = torch.rand(3, length + padding, generator=generator, dtype=torch.float64)
    target = (torch.rand(3, length + padding, generator=generator) > 0.5).double()
    valid = torch.arange(length + padding) < length
    for variant in ("biou", "iou", "bce"):
        padded = mask_loss(pred, target, variant, 5, valid=valid, backend=backend, reduction="none", border=border)
        cut = mask_loss(pred[:, :length], target[:, :length], variant, 5, backend=backend, reduction="none",
                        border=border)
        torch.testing.assert_close(padded, cut, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------------- gradient cases
def degenerate_cases():
    length = 16
    empty = torch.zeros(2, length, dtype=torch.float64)
    full = torch.ones(2, length, dtype=torch.float64)
    interval = interval_masks(length, [(3, 8), (9, 15)])
    disjoint = interval_masks(length, [(10, 15), (0, 5)])
    return {
        "empty target, empty prediction": (empty, empty),
        "empty target, soft prediction": (torch.full_like(empty, 0.3), empty),
        "full-video target": (torch.full_like(full, 0.9), full),
        "full-video target and prediction": (full, full),
        "saturated wrong prediction": (1 - interval, interval),
        "non-overlapping masks": (disjoint, interval),
    }


@pytest.mark.usefixtures("fast_engine")
@pytest.mark.parametrize("case", list(degenerate_cases()))
@pytest.mark.parametrize("variant", ["biou", "iou", "bce"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_are_finite_in_degenerate_cases(case, variant, backend):
    pred, target = degenerate_cases()[case]
    for dtype in (torch.float32, torch.float64):
        leaf = pred.to(dtype).requires_grad_()
        loss = mask_loss(leaf, target.to(dtype), variant, backend=backend)
        (grad,) = torch.autograd.grad(loss, leaf)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), (case, dtype)


@pytest.mark.usefixtures("fast_engine")
def test_l2_penalty_restores_a_gradient_for_non_overlapping_boundaries():
    pred, target = degenerate_cases()["non-overlapping masks"]
    grads = {}
    for penalty in (False, True):
        leaf = pred.clone().requires_grad_()
        loss = biou_loss(leaf, target, 7, l2_penalty=penalty, reduction="sum")
        (grads[penalty],) = torch.autograd.grad(loss, leaf)
        # with the bands apart the bIoU term is stuck at its maximum
        assert loss.item() >= 2 - 1e-3
    # the penalty's gradient is lambda = e^8 times larger than it would be, and it pulls each snippet toward target
    diff = grads[True] - grads[False]
    assert torch.all(torch.sign(diff[pred != target]) == torch.sign(pred - target)[pred != target])
    assert diff.abs().max() > 100


def test_lambda_is_the_inverse_band_overlap_and_l2_uses_the_foreground_count():
    target = interval_masks(10, [(2, 7)])[0]  # c = 5
    pred = target.clone()
    pred[7] = 0.6  # a soft extra snippet just after the end
    band_pred, band_target = boundary_band(pred, 3), boundary_band(target, 3)
    overlap = (band_pred * band_target).sum()
    expected = 1 / (overlap + GSMT_EPS) * (pred - target).norm() / 5
    no_penalty = biou_loss(pred, target, 3, l2_penalty=False)
    torch.testing.assert_close(biou_loss(pred, target, 3) - no_penalty, expected)
    torch.testing.assert_close(biou_loss(pred, target, 3, use_biou=False), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_iou_with_the_penalty_is_whole_mask_iou_plus_the_band_lambda_l2_plus_dice(backend):
    """mask_loss("iou", l2_penalty=True) = 1 - IoU + lambda * L2 + lambda2 * dice, with bIoU's lambda (band overlap):
    it differs from "biou" with the penalty in the IoU term only. None is each variant's published form."""
    target = interval_masks(12, [(3, 9)])[0].double()
    pred = torch.tensor([0, 0.1, 0.3, 0.8, 0.9, 1, 1, 0.9, 0.7, 0.6, 0.2, 0], dtype=torch.float64)
    overlap = (boundary_band(pred, 5) * boundary_band(target, 5)).sum()
    penalty = 1 / (overlap + GSMT_EPS) * (pred - target).norm() / 6  # c = 6 foreground snippets
    dice = dice_loss(pred, target)
    with_penalty = mask_loss(pred, target, "iou", kernel_size=5, backend=backend, l2_penalty=True)
    torch.testing.assert_close(with_penalty, iou_loss(pred, target) + penalty + 0.4 * dice)
    torch.testing.assert_close(mask_loss(pred, target, "iou", kernel_size=5, backend=backend),
                               iou_loss(pred, target) + 0.4 * dice)  # None: TAGS Table 2's L_IOU + L_dice
    biou_plain = biou_loss(pred, target, 5, backend=backend, l2_penalty=False)
    torch.testing.assert_close(mask_loss(pred, target, "biou", kernel_size=5, backend=backend),
                               biou_plain + penalty + 0.4 * dice)  # None: Eq. 6, the penalty on
    torch.testing.assert_close(mask_loss(pred, target, "biou", kernel_size=5, backend=backend, l2_penalty=False),
                               biou_plain + 0.4 * dice)
    leaf = pred.clone().requires_grad_()
    mask_loss(leaf, target, "iou", kernel_size=5, backend=backend, l2_penalty=True).backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'bce' has no"):
        mask_loss(pred, target, "bce", l2_penalty=True)
    with pytest.raises(TypeError, match="l2_penalty"):
        mask_loss(pred, target, "iou", l2_penalty=1)


def test_lambda_jumps_to_its_cap_when_a_sharp_prediction_moves_its_boundary_k_half_snippets():
    """The hand-made example of biou_loss's docstring: target [40, 60) of 100, k = 7, prediction sigmoid(+-4) of
    the target shifted by 2 or 3 snippets. At 3 the prediction is flat within 3 snippets of both target boundaries,
    its soft band is exactly 0 there, and lambda = 1/eps = e^8."""
    target = interval_masks(100, [(40, 60)])[0]
    found = {}
    for shift in (2, 3):
        logits = torch.full((100,), -4.0)
        logits[40 + shift:60 + shift] = 4.0
        pred = torch.sigmoid(logits)
        overlap = float((boundary_band(pred, 7) * boundary_band(target, 7)).sum())
        penalty = float(biou_loss(pred, target, 7, use_biou=False))
        found[shift] = (overlap, 1 / (overlap + GSMT_EPS), penalty, float(biou_loss(pred, target, 7)))
    overlap, weight, penalty, loss = found[2]
    assert math.isclose(overlap, 2 * (torch.sigmoid(torch.tensor(4.0)) - torch.sigmoid(torch.tensor(-4.0))),
                        rel_tol=1e-5)  # snippets 42 and 59: P - its window minimum, against a band of ones
    assert round(weight, 2) == 0.52 and round(penalty, 2) == 0.05 and round(loss, 2) == 0.86
    overlap, weight, penalty, loss = found[3]
    assert overlap == 0 and math.isclose(weight, math.exp(8), rel_tol=1e-9)
    assert math.isclose(penalty, 359.5, abs_tol=0.05) and math.isclose(loss, 360.5, abs_tol=0.05)


def test_dice_is_the_vnet_form_and_iou_the_soft_one():
    pred = torch.tensor([0.5, 0.5, 0.0, 1.0], dtype=torch.float64)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    inter, squares = 0.5 + 1.0, 0.25 + 0.25 + 1 + 1 + 1
    torch.testing.assert_close(dice_loss(pred, target), torch.tensor(1 - (2 * inter + GSMT_EPS) / (squares + GSMT_EPS),
                                                                   dtype=torch.float64))
    union = (0.5 + 1 - 0.5) + 0.5 + 0 + 1
    torch.testing.assert_close(iou_loss(pred, target), torch.tensor(1 - (inter + GSMT_EPS) / (union + GSMT_EPS),
                                                                  dtype=torch.float64))


def test_printed_dice_is_the_form_gsmt_eq6_prints():
    """dice_form="printed": 1 - (sum(P*G) + eps)/(sum(P^2) + sum(G^2) + eps), without V-Net's factor 2; a perfect
    mask scores 0.5, and the form is (1 + V-Net dice)/2 up to eps (the same minimiser, half the gradient)."""
    pred = torch.tensor([0.5, 0.5, 0.0, 1.0], dtype=torch.float64)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    inter, squares = 0.5 + 1.0, 0.25 + 0.25 + 1 + 1 + 1
    printed = dice_loss(pred, target, form="printed")
    torch.testing.assert_close(printed, torch.tensor(1 - (inter + GSMT_EPS) / (squares + GSMT_EPS),
                                                     dtype=torch.float64))
    torch.testing.assert_close(printed, (1 + dice_loss(pred, target)) / 2, atol=1e-4, rtol=0)
    assert math.isclose(float(dice_loss(target, target, form="printed")), 0.5, abs_tol=1e-4)
    assert float(dice_loss(torch.zeros(4), torch.zeros(4), form="printed")) == 0  # two empty masks
    leaf, vnet_leaf = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    dice_loss(leaf, target, form="printed").backward()
    dice_loss(vnet_leaf, target).backward()
    torch.testing.assert_close(leaf.grad, vnet_leaf.grad / 2, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="dice_form"):
        dice_loss(pred, target, form="halved")


@pytest.mark.usefixtures("fast_engine")
@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("variant", ["biou", "iou"])
def test_mask_loss_with_the_printed_dice(variant, border):
    """The fast path's printed dice matches the kornia path in value and gradient, and the loss is the
    V-Net one with its dice term swapped."""
    generator = torch.Generator().manual_seed(5)
    pred = torch.rand(3, 14, generator=generator, dtype=torch.float64)
    target = (torch.rand(3, 14, generator=generator) > 0.5).double()
    results = []
    for backend in BACKENDS:
        leaf = pred.clone().requires_grad_()
        loss = mask_loss(leaf, target, variant, 5, backend=backend, reduction="none", border=border,
                         dice_form="printed")
        results.append((loss, *torch.autograd.grad(loss.sum(), leaf)))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-10, rtol=0)
    vnet = mask_loss(pred, target, variant, 5, reduction="none", border=border)
    swapped = vnet + 0.4 * (dice_loss(pred, target, reduction="none", form="printed")
                            - dice_loss(pred, target, reduction="none"))
    torch.testing.assert_close(results[0][0], swapped, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------- shapes and reductions
def test_reductions_valid_masks_and_time_axis():
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 12, 12, generator=generator)
    target = (torch.rand(2, 12, 12, generator=generator) > 0.5).float()
    per_mask = mask_loss(pred, target, reduction="none")
    assert per_mask.shape == (2, 12)
    torch.testing.assert_close(mask_loss(pred, target), per_mask.mean())
    torch.testing.assert_close(mask_loss(pred, target, reduction="sum"), per_mask.sum())
    # column t of a (B, T, T) global mask is snippet t's mask: dim=1 equals transposing
    torch.testing.assert_close(mask_loss(pred, target, dim=1, reduction="none"),
                               mask_loss(pred.transpose(1, 2), target.transpose(1, 2), reduction="none"))
    # a per-mask selection (only foreground snippets carry a mask target) via a broadcast valid
    chosen = torch.rand(2, 12, 1, generator=generator) > 0.5
    selected = mask_loss(pred, target, valid=chosen, reduction="none")
    assert torch.all(selected[~chosen[..., 0]] == 0)
    torch.testing.assert_close(mask_loss(pred, target, valid=chosen), per_mask[chosen[..., 0]].mean())
    nothing = torch.zeros(2, 12, 1, dtype=torch.bool)
    assert mask_loss(pred, target, valid=nothing).item() == 0


def test_clear_errors_for_bad_masks():
    pred = torch.rand(2, 10)
    with pytest.raises(TypeError, match="pred"):
        mask_loss((pred > 0.5).long(), pred)
    with pytest.raises(TypeError, match="target"):
        mask_loss(pred, (pred > 0.5).long())
    with pytest.raises(ValueError, match="target must have pred's shape"):
        mask_loss(pred, torch.rand(2, 11))
    with pytest.raises(TypeError, match="valid"):
        mask_loss(pred, pred, valid=torch.ones(10))
    with pytest.raises(ValueError, match="valid"):
        mask_loss(pred, pred, valid=torch.ones(3, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        mask_loss(pred, pred, reduction="avg")
    with pytest.raises(ValueError, match="variant"):
        mask_loss(pred, pred, variant="ce")
    with pytest.raises(ValueError, match="border"):
        mask_loss(pred, pred, border="reflect")
    with pytest.raises(ValueError, match="border"):
        boundary_band(pred, 3, border="constant")
    with pytest.raises(ValueError, match="dice_form"):
        mask_loss(pred, pred, "iou", dice_form="sorensen")
    with pytest.raises(ValueError, match="use_biou or l2_penalty"):
        biou_loss(pred, pred, use_biou=False, l2_penalty=False)
    with pytest.raises(ValueError, match="T >= 1"):
        mask_loss(torch.rand(2, 0), torch.rand(2, 0))
    assert mask_loss(pred, pred > 0.5).dtype == torch.float32  # bool targets are accepted


@pytest.mark.parametrize("loss", [mask_loss, biou_loss, iou_loss, dice_loss])
def test_mask_losses_refuse_logits_where_probabilities_are_expected(loss):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 12, generator=generator) * 3
    target = (torch.rand(2, 12, generator=generator) > 0.5).float()
    with pytest.raises(ValueError, match=r"pred must hold probabilities in \[0, 1\] \(apply a sigmoid to logits "
                                         r"first\), got values in \[-\d"):
        loss(logits, target)
    with pytest.raises(ValueError, match=r"target must hold probabilities in \[0, 1\].*got values in \[0, 2\]"):
        loss(torch.sigmoid(logits), target * 2)
    with pytest.raises(ValueError, match=r"pred must hold probabilities.*nan"):
        loss(torch.full((2, 12), float("nan")), target)
    assert torch.isfinite(loss(torch.sigmoid(logits), target))  # probabilities, exactly 0 and 1 included
    assert torch.isfinite(loss(target, target))


# ---------------------------------------------------------------------------------------- classification (Eq. 5)
def test_focal_loss_by_hand():
    logits = torch.log(torch.tensor([[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]])).T[None]  # (1, 3, 2): p = (.25, .25, .5)
    labels = torch.tensor([[2, 0]])
    expected = torch.tensor([[0.5**2 * -math.log(0.5), 0.75**2 * -math.log(0.25)]])
    torch.testing.assert_close(focal_loss(logits, labels, reduction="none"), expected)
    torch.testing.assert_close(focal_loss(logits, labels), expected.mean())
    # padding (-1) is ignored, and gamma = 0 is plain cross-entropy
    padded = torch.tensor([[2, -1]])
    torch.testing.assert_close(focal_loss(logits, padded), expected[0, 0])
    torch.testing.assert_close(focal_loss(logits, labels, gamma=0.0),
                               torch.nn.functional.cross_entropy(logits, labels))


def test_sigmoid_focal_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [-math.log(3.0), 0.0]])  # p = (.5, .75), (.25, .5)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = torch.tensor([[0.25 * 0.5**2 * -math.log(0.5), 0.75 * 0.75**2 * -math.log(0.25)],
                             [0.75 * 0.25**2 * -math.log(0.75), 0.25 * 0.5**2 * -math.log(0.5)]])
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="none"), expected)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="sum"), expected.sum())
    torch.testing.assert_close(sigmoid_focal_loss(logits[None], targets[None]), expected.mean())  # any shape
    # alpha=None and gamma=0 is plain binary cross-entropy
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0, reduction="none"),
                               torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none"))
    with pytest.raises(ValueError, match="targets"):
        sigmoid_focal_loss(logits, targets[0])
    with pytest.raises(ValueError, match="alpha"):
        sigmoid_focal_loss(logits, targets, alpha=1.5)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(logits, targets, reduction="max")


def test_class_balanced_logistic_loss_by_hand():
    # K = 2 action classes + background: ceil(2/10) = 1 hard negative; r = sigmoid(z) = (0.5, 0.75, 0.25)
    logits = torch.tensor([0.0, math.log(3), -math.log(3)], dtype=torch.float64).view(1, 3)
    expected = -math.log(0.5) - 10 * math.log(1 - 0.75)  # the hard negative is class 1, the highest non-target r
    torch.testing.assert_close(class_balanced_logistic_loss(logits, torch.tensor([0])),
                               torch.tensor(expected, dtype=torch.float64))
    expected_bg = -math.log(0.25) - 10 * math.log(1 - 0.75)  # target = background (index K = 2)
    torch.testing.assert_close(class_balanced_logistic_loss(logits, torch.tensor([2])),
                               torch.tensor(expected_bg, dtype=torch.float64))


def test_hard_negatives_are_the_top_tenth_and_only_they_get_gradient():
    num_classes = 20  # K = 20 -> ceil(20/10) = 2 hard negatives among 21 outputs
    logits = torch.linspace(-3, 3, num_classes + 1, dtype=torch.float64).view(1, -1).requires_grad_()
    label = torch.tensor([num_classes])  # target is the top-scoring class: negatives are the next two
    class_balanced_logistic_loss(logits, label).backward()
    touched = logits.grad[0].nonzero().flatten().tolist()
    assert touched == [num_classes - 2, num_classes - 1, num_classes]
    z = logits.detach()[0]
    expected = torch.nn.functional.softplus(-z[-1]) + 10 * torch.nn.functional.softplus(z[-3:-1]).mean()
    torch.testing.assert_close(class_balanced_logistic_loss(logits.detach(), label), expected)


def test_classification_loss_combines_with_lambda1_and_stays_finite_when_saturated():
    logits = torch.tensor([[[80.0], [-80.0], [-80.0]]], requires_grad=True)  # (1, 3, 1), confidently wrong
    regression = torch.tensor([[[80.0], [-80.0], [-80.0]]], requires_grad=True)
    labels = torch.tensor([[1]])
    total = classification_loss(logits, regression, labels)
    expected = 0.4 * focal_loss(logits, labels) + 0.6 * class_balanced_logistic_loss(regression, labels)
    torch.testing.assert_close(total, expected)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(logits.grad).all() and torch.isfinite(regression.grad).all()


def test_classification_errors():
    logits = torch.randn(2, 4, 5)
    with pytest.raises(TypeError, match="labels"):
        focal_loss(logits, torch.zeros(2, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match="labels must have shape"):
        focal_loss(logits, torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(TypeError, match="logits"):
        class_balanced_logistic_loss(logits.long(), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="num_hard_negatives"):
        class_balanced_logistic_loss(logits, torch.zeros(2, 5, dtype=torch.long), num_hard_negatives=4)
    with pytest.raises(ValueError, match="regression_logits"):
        classification_loss(logits, torch.randn(2, 4, 6), torch.zeros(2, 5, dtype=torch.long))


@pytest.mark.parametrize("loss", [focal_loss, class_balanced_logistic_loss])
@pytest.mark.parametrize("bad", [4, 7, -2])
def test_classification_losses_refuse_labels_out_of_range(loss, bad):
    logits = torch.randn(2, 4, 5)  # K + 1 = 4 classes: labels 0..3, -1 for padding
    labels = torch.tensor([[0, 1, 2, 3, -1], [3, 2, 1, 0, bad]])
    with pytest.raises(ValueError, match=rf"labels must be 0\.\.3 for logits of K\+1 = 4 classes \(K = background\) "
                                         rf"or -1 for padding, got {bad}"):
        loss(logits, labels)
    labels[1, 4] = -1
    assert torch.isfinite(loss(logits, labels))


# ---------------------------------------------------------------------------------------------------------- device
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_losses_run_on_cuda_and_match_cpu():
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 30, 30, generator=generator)
    target = (torch.rand(4, 30, 30, generator=generator) > 0.5).float()
    for backend in BACKENDS:
        for border, dice_form in (("geodesic", "vnet"), ("zero", "printed")):
            options = dict(backend=backend, border=border, dice_form=dice_form)
            cpu_leaf = pred.clone().requires_grad_()
            cpu = mask_loss(cpu_leaf, target, **options)
            cpu.backward()
            leaf = pred.cuda().requires_grad_()
            gpu = mask_loss(leaf, target.cuda(), valid=torch.ones(30, dtype=torch.bool, device="cuda"), **options)
            gpu.backward()
            assert gpu.device.type == "cuda" and torch.isfinite(leaf.grad).all()
            torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(leaf.grad.cpu(), cpu_leaf.grad, atol=1e-5, rtol=1e-4)
    logits, labels = torch.randn(2, 5, 7, device="cuda"), torch.randint(-1, 5, (2, 7), device="cuda")
    assert classification_loss(logits, logits.clone(), labels).device.type == "cuda"
