"""Tests for tadlab.segments: hand-checked values, properties, reference Soft-NMS, errors, CUDA."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.segments import (
    batched_soft_nms,
    bmn_soft_nms,
    seconds_to_snippets,
    segment_giou,
    segment_iou,
    snippets_to_seconds,
    soft_nms,
)


# ---------------------------------------------------------------- strategies and plain-Python references
def segment_lists(min_size=1, max_size=8, min_length=0.01):
    pair = st.tuples(st.floats(0, 50, allow_nan=False), st.floats(min_length, 30, allow_nan=False))
    return st.lists(pair, min_size=min_size, max_size=max_size).map(
        lambda rows: torch.tensor([[s, s + w] for s, w in rows], dtype=torch.float64).reshape(-1, 2)
    )


def py_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(segments, scores, threshold, min_score):
    """Textbook hard NMS: walk the detections by decreasing score, keep one unless it overlaps a kept one."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if scores[i] < min_score:
            continue
        if all(py_iou(segments[i], segments[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def reference_soft_nms(segments, scores, method, sigma, threshold, min_score):
    """Soft-NMS as written in Bodla et al. (Algorithm 1), on Python lists."""
    live = {i: s for i, s in enumerate(scores) if s >= min_score}
    picked = []
    while live:
        best = min(live, key=lambda i: (-live[i], i))
        picked.append((best, live.pop(best)))
        for i in list(live):
            iou = py_iou(segments[best], segments[i])
            if method == "gaussian":
                live[i] *= math.exp(-iou * iou / sigma)
            elif iou > threshold:
                live[i] *= 1 - iou
            if live[i] < min_score:
                del live[i]
    return picked


def reference_bmn_soft_nms(segments, scores, video_length, alpha, t1, t2, top_k):
    """BMN's post-processing soft_nms (post_processing.py of its public code) on Python lists, with the scores
    sorted first as it does, and without its drop of the last candidate (the loop runs while any is left)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    live = [[i, scores[i]] for i in order]
    picked = []
    while live and len(picked) < top_k:
        best = max(range(len(live)), key=lambda j: (live[j][1], -live[j][0]))  # first maximum, lowest index
        chosen, chosen_score = live.pop(best)
        width = (segments[chosen][1] - segments[chosen][0]) / video_length
        for entry in live:
            iou = py_iou(segments[chosen], segments[entry[0]])
            if iou > t1 + (t2 - t1) * width:
                entry[1] *= math.exp(-iou * iou / alpha)
        picked.append((chosen, chosen_score))
    return picked


# ---------------------------------------------------------------- tIoU and GIoU
def test_iou_hand_checked():
    a = torch.tensor([[0.0, 10.0], [2.0, 4.0]])
    b = torch.tensor([[5.0, 15.0], [0.0, 10.0], [20.0, 30.0]])
    expected = torch.tensor([[5 / 15, 1.0, 0.0], [0.0, 2 / 10, 0.0]])
    torch.testing.assert_close(segment_iou(a, b), expected)
    torch.testing.assert_close(segment_iou(a, b[:2], aligned=True), torch.tensor([5 / 15, 2 / 10]))


def test_giou_hand_checked():
    a = torch.tensor([[0.0, 10.0], [0.0, 2.0]])
    b = torch.tensor([[5.0, 15.0], [4.0, 6.0]])
    # overlap: IoU 5/15, enclosing 15 = union -> GIoU = IoU; disjoint: IoU 0, enclosing 6, union 4 -> -2/6
    torch.testing.assert_close(segment_giou(a, b, aligned=True), torch.tensor([5 / 15, -2 / 6]))
    torch.testing.assert_close(segment_giou(a, b)[1, 1], torch.tensor(-2 / 6))
    # far apart approaches -1
    far = segment_giou(torch.tensor([[0.0, 1.0]]), torch.tensor([[1000.0, 1001.0]]))
    assert -1.0 < float(far) < -0.99


def test_batched_shapes_broadcast():
    a = torch.rand(3, 4, 1).cumsum(-1).expand(3, 4, 2) + torch.tensor([0.0, 1.0])
    b = torch.rand(3, 5, 1).cumsum(-1).expand(3, 5, 2) + torch.tensor([0.0, 2.0])
    out = segment_iou(a, b)
    assert out.shape == (3, 4, 5)
    for i in range(3):
        torch.testing.assert_close(out[i], segment_iou(a[i], b[i]))
    assert segment_iou(a, b[:, :4], aligned=True).shape == (3, 4)
    assert segment_giou(a, b[0]).shape == (3, 4, 5)  # b broadcasts over the batch


def test_zero_length_segments_give_zero_not_nan():
    p = torch.tensor([[3.0, 3.0]])
    assert float(segment_iou(p, p)) == 0.0
    assert float(segment_giou(p, p)) == 0.0
    assert float(segment_iou(p, torch.tensor([[0.0, 5.0]]))) == 0.0


def test_dtype_follows_inputs():
    a = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert segment_iou(a, a).dtype == torch.float64
    assert segment_iou(a.half(), a.half()).dtype == torch.float16
    assert segment_iou([[0, 2]], [[1, 3]]).dtype == torch.get_default_dtype()  # lists of ints accepted


@settings(deadline=None, max_examples=60)
@given(segment_lists(), segment_lists())
def test_iou_properties(a, b):
    iou = segment_iou(a, b)
    assert iou.shape == (len(a), len(b))
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()
    torch.testing.assert_close(iou, segment_iou(b, a).T)
    torch.testing.assert_close(segment_iou(a, a).diagonal(), torch.ones(len(a), dtype=a.dtype))
    ref = torch.tensor([[py_iou(x, y) for y in b.tolist()] for x in a.tolist()], dtype=a.dtype)
    torch.testing.assert_close(iou, ref)


@settings(deadline=None, max_examples=60)
@given(segment_lists(), segment_lists())
def test_giou_properties(a, b):
    giou, iou = segment_giou(a, b), segment_iou(a, b)
    assert ((giou >= -1) & (giou <= 1 + 1e-12)).all()
    assert (giou <= iou + 1e-12).all()
    torch.testing.assert_close(giou, segment_giou(b, a).T)
    torch.testing.assert_close(segment_giou(a, a).diagonal(), torch.ones(len(a), dtype=a.dtype))
    # overlapping pairs have enclosing == union in 1D, so GIoU == IoU there
    overlap = iou > 0
    torch.testing.assert_close(giou[overlap], iou[overlap])


def test_giou_has_gradient_for_disjoint_segments():
    pred = torch.tensor([[0.0, 2.0]], requires_grad=True)
    loss = 1 - segment_giou(pred, torch.tensor([[5.0, 8.0]]), aligned=True).sum()
    loss.backward()
    assert pred.grad[0, 1] < 0  # moving the end right (towards the target) lowers the loss


# ---------------------------------------------------------------- seconds <-> snippets
def test_time_conversion_round_trip():
    seconds = torch.tensor([[1.5, 30.0]], dtype=torch.float64)
    snippets = seconds_to_snippets(seconds, duration=60.0, num_snippets=100)
    torch.testing.assert_close(snippets, torch.tensor([[2.5, 50.0]], dtype=torch.float64))
    torch.testing.assert_close(snippets_to_seconds(snippets, 60.0, 100), seconds)
    assert seconds_to_snippets(6.0, 60.0, 100) == pytest.approx(10.0)
    np.testing.assert_allclose(seconds_to_snippets(np.array([6.0]), 60.0, 100), [10.0])
    batch = seconds_to_snippets(torch.ones(2, 3, 2), torch.tensor([10.0, 20.0])[:, None, None], 100)
    assert batch[0, 0, 0] == 10.0 and batch[1, 0, 0] == 5.0


@pytest.mark.parametrize("duration, num_snippets, match", [
    (0.0, 100, "duration"), (-3.0, 100, "duration"), (float("nan"), 100, "duration"),
    (10.0, 0, "num_snippets"), (10.0, 2.5, "num_snippets"),
])
def test_time_conversion_errors(duration, num_snippets, match):
    with pytest.raises(ValueError, match=match):
        seconds_to_snippets(1.0, duration, num_snippets)


# ---------------------------------------------------------------- Soft-NMS
def test_soft_nms_hand_checked_gaussian():
    segments = torch.tensor([[0.0, 10.0], [0.0, 5.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    kept, kept_scores, index = soft_nms(segments, scores, method="gaussian", sigma=0.5)
    # [0,5] has tIoU 0.5 with [0,10]: 0.8 * exp(-0.25 / 0.5) = 0.4852 < 0.7, so it comes last
    assert index.tolist() == [0, 2, 1]
    torch.testing.assert_close(kept_scores, torch.tensor([0.9, 0.7, 0.8 * math.exp(-0.5)]))
    torch.testing.assert_close(kept, segments[[0, 2, 1]])
    assert index.dtype == torch.int64


def test_soft_nms_hand_checked_linear_and_hard():
    segments = torch.tensor([[0.0, 10.0], [0.0, 8.0], [0.0, 4.0]])  # tIoU with first: 0.8 and 0.4
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, s, i = soft_nms(segments, scores, method="linear", iou_threshold=0.5)
    # [0,8] decays to 0.8 * 0.2 = 0.16; [0,4] (tIoU 0.4 <= 0.5) keeps 0.7, then [0,8] vs [0,4]: tIoU 0.5, no decay
    assert i.tolist() == [0, 2, 1]
    torch.testing.assert_close(s, torch.tensor([0.9, 0.7, 0.16]))
    _, s, i = soft_nms(segments, scores, method="hard", iou_threshold=0.5)
    assert i.tolist() == [0, 2]
    torch.testing.assert_close(s, torch.tensor([0.9, 0.7]))
    # tIoU equal to the threshold is not "above" it: [0,4] (tIoU 0.4) survives a 0.4 threshold
    assert soft_nms(segments, scores, method="hard", iou_threshold=0.4)[2].tolist() == [0, 2]


@settings(deadline=None, max_examples=60)
@given(segment_lists(max_size=12), st.data(), st.floats(0.0, 1.0))
def test_hard_soft_nms_equals_greedy_nms(segments, data, threshold):
    n = len(segments)
    # few distinct score values, so ties happen and the tie rule is tested too
    scores = data.draw(st.lists(st.sampled_from([0.0005, 0.2, 0.5, 0.9]), min_size=n, max_size=n))
    _, kept_scores, index = soft_nms(segments, torch.tensor(scores, dtype=torch.float64), method="hard",
                                     iou_threshold=threshold)
    assert index.tolist() == greedy_nms(segments.tolist(), scores, threshold, 1e-3)
    torch.testing.assert_close(kept_scores, torch.tensor(scores, dtype=torch.float64)[index])


@settings(deadline=None, max_examples=40)
@given(segment_lists(max_size=12), st.data(), st.sampled_from(["gaussian", "linear"]),
       st.floats(0.05, 2.0), st.floats(0.0, 1.0))
def test_soft_nms_matches_reference(segments, data, method, sigma, threshold):
    n = len(segments)
    scores = data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n, unique=True))
    _, kept_scores, index = soft_nms(segments, torch.tensor(scores, dtype=torch.float64), method=method,
                                     sigma=sigma, iou_threshold=threshold, min_score=0.01)
    ref = reference_soft_nms(segments.tolist(), scores, method, sigma, threshold, 0.01)
    assert index.tolist() == [i for i, _ in ref]
    np.testing.assert_allclose(kept_scores.numpy(), [s for _, s in ref], rtol=1e-9)


@settings(deadline=None, max_examples=40)
@given(segment_lists(max_size=12), st.data())
def test_gaussian_huge_sigma_keeps_scores(segments, data):
    n = len(segments)
    scores = torch.tensor(data.draw(st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n)), dtype=torch.float64)
    _, kept_scores, index = soft_nms(segments, scores, method="gaussian", sigma=1e12)
    assert sorted(index.tolist()) == list(range(n))
    torch.testing.assert_close(kept_scores, scores[index])
    assert (kept_scores[:-1] >= kept_scores[1:]).all()


@settings(deadline=None, max_examples=40)
@given(segment_lists(max_size=12), st.data(), st.sampled_from(["gaussian", "linear", "hard"]),
       st.integers(1, 6), st.floats(0.0, 0.5))
def test_top_k_and_min_score_respected(segments, data, method, top_k, min_score):
    n = len(segments)
    scores = torch.tensor(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)), dtype=torch.float64)
    kept, kept_scores, index = soft_nms(segments, scores, method=method, min_score=min_score, top_k=top_k)
    assert len(index) <= top_k and len(set(index.tolist())) == len(index)
    assert (kept_scores >= min_score).all()
    assert (kept_scores <= scores[index]).all()  # scores only decay
    assert (kept_scores[:-1] >= kept_scores[1:]).all()  # selection order is score order
    torch.testing.assert_close(kept, segments[index])
    # top_k only truncates: the first top_k of the uncapped run
    _, _, uncapped = soft_nms(segments, scores, method=method, min_score=min_score)
    assert index.tolist() == uncapped[:top_k].tolist()


def test_soft_nms_empty_and_all_below_min_score():
    kept, s, i = soft_nms(torch.zeros(0, 2), torch.zeros(0))
    assert kept.shape == (0, 2) and s.shape == (0,) and i.shape == (0,) and i.dtype == torch.int64
    kept, s, i = soft_nms(torch.tensor([[0.0, 1.0]]), torch.tensor([1e-4]))
    assert len(i) == 0


@settings(deadline=None, max_examples=30)
@given(segment_lists(max_size=12), st.data(), st.sampled_from(["gaussian", "linear", "hard"]))
def test_batched_soft_nms_equals_per_class(segments, data, method):
    n = len(segments)
    scores = torch.tensor(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n, unique=True)),
                          dtype=torch.float64)
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    kept, kept_scores, kept_labels, index = batched_soft_nms(segments, scores, labels, method=method)
    assert (kept_scores[:-1] >= kept_scores[1:]).all()
    assert kept_labels.tolist() == labels[index].tolist()
    torch.testing.assert_close(kept, segments[index])
    for c in labels.unique().tolist():
        members = (labels == c).nonzero()[:, 0]
        _, s_c, i_c = soft_nms(segments[members], scores[members], method=method)
        mine = kept_labels == c
        assert index[mine].tolist() == members[i_c].tolist()
        torch.testing.assert_close(kept_scores[mine], s_c)


def test_bmn_soft_nms_hand_checked():
    # video of 10; A [0,4) is selected first, width 0.4: it decays only tIoU > 0.5 + 0.4 * 0.4 = 0.66
    segments = torch.tensor([[0.0, 4.0], [0.0, 3.0], [2.0, 4.0], [5.0, 9.0]])  # A, B, C, D
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6], dtype=torch.float64)
    _, kept, index = bmn_soft_nms(segments, scores, video_length=10.0)
    # B: tIoU 3/4 = 0.75 > 0.66, decayed to 0.8 exp(-0.5625 / 0.4) = 0.19602; C: tIoU 2/4 = 0.5, kept at 0.7; then C
    # (width 0.2, threshold 0.58) leaves B (tIoU 1/4) alone and D overlaps nothing
    assert index.tolist() == [0, 2, 3, 1]
    torch.testing.assert_close(kept, torch.tensor([0.9, 0.7, 0.6, 0.8 * math.exp(-0.5625 / 0.4)], dtype=torch.float64))
    # plain Gaussian Soft-NMS (sigma 0.4) decays C too: 0.7 exp(-0.25 / 0.4) = 0.3747 falls below D; when C is
    # selected it decays B once more by exp(-0.0625 / 0.4)
    _, kept, index = soft_nms(segments, scores, method="gaussian", sigma=0.4)
    assert index.tolist() == [0, 3, 2, 1]
    torch.testing.assert_close(kept, torch.tensor([0.9, 0.6, 0.7 * math.exp(-0.25 / 0.4),
                                                   0.8 * math.exp(-0.5625 / 0.4) * math.exp(-0.0625 / 0.4)],
                                                  dtype=torch.float64))


def test_bmn_soft_nms_threshold_grows_with_the_selected_width():
    segments = torch.tensor([[0.0, 4.0], [0.0, 3.0]])  # tIoU 0.75
    scores = torch.tensor([0.9, 0.8])
    # normalised width 0.4 (video of 10): threshold 0.66 < 0.75, decayed; width 1 (video of 4): threshold 0.9, kept
    assert float(bmn_soft_nms(segments, scores, 10.0)[1][1]) < 0.2
    assert float(bmn_soft_nms(segments, scores, 4.0)[1][1]) == pytest.approx(0.8)
    # the width is the selected segment's: the short one selected first (3 of 6), thresholds 0.5 and 1: threshold
    # 0.75 exactly (all dyadic), and a tIoU equal to it is not above it
    _, kept, index = bmn_soft_nms(segments, torch.tensor([0.8, 0.9]), 6.0, low_threshold=0.5, high_threshold=1.0)
    assert index.tolist() == [1, 0] and float(kept[1]) == pytest.approx(0.8)
    _, kept, index = bmn_soft_nms(segments, torch.tensor([0.8, 0.9]), 6.0, low_threshold=0.5, high_threshold=0.9)
    assert float(kept[1]) == pytest.approx(0.8 * math.exp(-0.5625 / 0.4))  # threshold 0.7 < 0.75: decayed


@settings(deadline=None, max_examples=40)
@given(segment_lists(max_size=12), st.data(), st.floats(1.0, 100.0), st.floats(0.05, 2.0), st.floats(0.0, 1.0),
       st.floats(0.0, 1.0), st.integers(1, 13))
def test_bmn_soft_nms_matches_bmn_reference(segments, data, video_length, sigma, low, high, top_k):
    n = len(segments)
    scores = data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n, unique=True))
    _, kept_scores, index = bmn_soft_nms(segments, torch.tensor(scores, dtype=torch.float64), video_length,
                                         sigma=sigma, low_threshold=low, high_threshold=high, top_k=top_k)
    ref = reference_bmn_soft_nms(segments.tolist(), scores, video_length, sigma, low, high, top_k)
    assert index.tolist() == [i for i, _ in ref]
    np.testing.assert_allclose(kept_scores.numpy(), [s for _, s in ref], rtol=1e-9)
    assert len(index) == min(n, top_k)  # nothing is dropped for a small score


@settings(deadline=None, max_examples=30)
@given(segment_lists(max_size=12), st.data(), st.floats(0.05, 2.0))
def test_bmn_soft_nms_with_zero_thresholds_is_gaussian_soft_nms(segments, data, sigma):
    n = len(segments)
    scores = torch.tensor(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)), dtype=torch.float64)
    kept, kept_scores, index = bmn_soft_nms(segments, scores, 50.0, sigma=sigma, low_threshold=0.0,
                                            high_threshold=0.0, top_k=None)
    plain = soft_nms(segments, scores, method="gaussian", sigma=sigma, min_score=0.0)
    assert index.tolist() == plain[2].tolist()
    torch.testing.assert_close(kept_scores, plain[1])
    torch.testing.assert_close(kept, plain[0])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"video_length": 0.0}, ValueError, "video_length must be a positive number"),
    ({"video_length": float("inf")}, ValueError, "video_length"),
    ({"low_threshold": -0.1}, ValueError, r"low_threshold must be a number in \[0, 1\]"),
    ({"high_threshold": 1.5}, ValueError, "high_threshold"),
    ({"sigma": 0.0}, ValueError, "sigma"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"scores": torch.tensor([0.5])}, ValueError, r"scores must have shape \(N,\) = \(2,\)"),
])
def test_bmn_soft_nms_errors(kwargs, error, match):
    args = {"segments": torch.tensor([[0.0, 1.0], [0.5, 2.0]]), "scores": torch.tensor([0.9, 0.8]),
            "video_length": 10.0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        bmn_soft_nms(**args)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("bad, match", [
    (torch.tensor([[2.0, 1.0]]), "start <= end"),
    (torch.tensor([[float("nan"), 1.0]]), "finite"),
    (torch.zeros(3), r"shape \(\.\.\., N, 2\)"),
    (torch.zeros(2, 3), r"shape \(\.\.\., N, 2\)"),
])
def test_iou_errors_name_argument(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        segment_iou(bad, torch.tensor([[0.0, 1.0]]))
    assert str(info.value).startswith("a ")
    with pytest.raises(ValueError, match="^b "):
        segment_giou(torch.tensor([[0.0, 1.0]]), bad)


def test_iou_errors_other():
    with pytest.raises(ValueError, match="same N"):
        segment_iou(torch.zeros(2, 2), torch.zeros(3, 2), aligned=True)
    with pytest.raises(TypeError, match="a must hold real numbers"):
        segment_iou(torch.zeros(1, 2, dtype=torch.bool), torch.zeros(1, 2))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"scores": torch.tensor([0.5])}, ValueError, r"scores must have shape \(N,\) = \(2,\)"),
    ({"scores": torch.tensor([0.5, float("nan")])}, ValueError, "scores must be finite"),
    ({"scores": torch.tensor([1, 2])}, TypeError, "scores must be a floating"),
    ({"segments": torch.zeros(1, 2, 2)}, ValueError, r"segments must have shape \(N, 2\)"),
    ({"segments": torch.tensor([[0.0, 1.0], [3.0, 2.0]])}, ValueError, "segments must have start <= end"),
    ({"method": "soft"}, ValueError, "method must be one of"),
    ({"sigma": 0.0}, ValueError, "sigma"),
    ({"iou_threshold": 1.5}, ValueError, "iou_threshold"),
    ({"top_k": 0}, ValueError, "top_k"),
    ({"min_score": float("nan")}, ValueError, "min_score"),
])
def test_soft_nms_errors(kwargs, error, match):
    args = {"segments": torch.tensor([[0.0, 1.0], [0.5, 2.0]]), "scores": torch.tensor([0.9, 0.8])}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        soft_nms(**args)


def test_batched_soft_nms_label_errors():
    seg, sc = torch.tensor([[0.0, 1.0], [0.5, 2.0]]), torch.tensor([0.9, 0.8])
    with pytest.raises(TypeError, match="labels must be an integer"):
        batched_soft_nms(seg, sc, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="labels must have shape"):
        batched_soft_nms(seg, sc, torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    start = torch.rand(200, generator=g) * 90
    segments = torch.stack([start, start + 1 + torch.rand(200, generator=g) * 20], 1)
    scores = torch.rand(200, generator=g)
    labels = torch.randint(0, 4, (200,), generator=g)
    cuda = torch.device("cuda")
    torch.testing.assert_close(segment_iou(segments.to(cuda), segments.to(cuda)).cpu(), segment_iou(segments, segments))
    torch.testing.assert_close(segment_giou(segments.to(cuda), segments.to(cuda)).cpu(),
                               segment_giou(segments, segments))
    for method in ["gaussian", "linear", "hard"]:
        k_gpu, s_gpu, i_gpu = soft_nms(segments.to(cuda), scores.to(cuda), method=method)
        k_cpu, s_cpu, i_cpu = soft_nms(segments, scores, method=method)
        assert i_gpu.device.type == "cuda" and i_gpu.cpu().tolist() == i_cpu.tolist()
        torch.testing.assert_close(k_gpu.cpu(), k_cpu)
        torch.testing.assert_close(s_gpu.cpu(), s_cpu)
        out = batched_soft_nms(segments.to(cuda), scores.to(cuda), labels.to(cuda), method=method)
        assert all(t.device.type == "cuda" for t in out)
        assert out[3].cpu().tolist() == batched_soft_nms(segments, scores, labels, method=method)[3].tolist()
    k_gpu, s_gpu, i_gpu = bmn_soft_nms(segments.to(cuda), scores.to(cuda), 110.0)
    k_cpu, s_cpu, i_cpu = bmn_soft_nms(segments, scores, 110.0)
    assert i_gpu.device.type == "cuda" and i_gpu.cpu().tolist() == i_cpu.tolist()
    torch.testing.assert_close(s_gpu.cpu(), s_cpu)
