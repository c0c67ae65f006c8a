"""Tests for tadlab.labels: hand-checked targets, properties against brute force, batch == single, errors."""
import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.labels import (
    boundary_labels,
    boundary_matching_map,
    boundary_matching_valid,
    centre_sampling_assign,
    frame_labels,
    global_masks,
    hungarian_match,
    matching_cost,
    set_match,
    snippet_instances,
    snippet_labels,
    sparse_proposal_targets,
    sparse_proposals,
    tiou_assign,
)
from tadlab.segments import segment_giou

K = 3


# ---------------------------------------------------------------- strategies and plain-Python references
@st.composite
def videos(draw, max_instances=5, integer=False, min_instances=0):
    """One video's ground truth: T, segments (N, 2) float64 inside [0, T], labels (N,)."""
    T = draw(st.integers(4, 24))
    n = draw(st.integers(min_instances, max_instances))
    rows = []
    for _ in range(n):
        if integer:
            s = draw(st.integers(0, T - 1))
            e = draw(st.integers(s + 1, T))
        else:
            s = draw(st.floats(0, T - 0.05, allow_nan=False))
            e = draw(st.floats(s + 0.05, T, allow_nan=False))
            if not e > s:
                e = min(T, s + 0.05)
        rows.append([float(s), float(e)])
    segments = torch.tensor(rows, dtype=torch.float64).reshape(-1, 2)
    labels = torch.tensor(draw(st.lists(st.integers(0, K - 1), min_size=n, max_size=n)), dtype=torch.int64)
    return T, segments, labels


def py_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def py_owner(segments, T):
    """Per snippet: the shortest instance whose [s, e) holds the centre t + 0.5 (ties: lower index), or -1."""
    owners = []
    for t in range(T):
        hits = [(e - s, n) for n, (s, e) in enumerate(segments) if s <= t + 0.5 < e]
        owners.append(min(hits)[1] if hits else -1)
    return owners


def pad_batch(videos_):
    """Pad (segments, labels) pairs like collate_videos: zero segments, label -1."""
    n_max = max(len(s) for s, _ in videos_)
    segs = torch.zeros(len(videos_), n_max, 2, dtype=torch.float64)
    labs = torch.full((len(videos_), n_max), -1, dtype=torch.int64)
    for b, (s, l) in enumerate(videos_):
        segs[b, : len(s)], labs[b, : len(l)] = s, l
    return segs, labs


# ---------------------------------------------------------------- snippet labels (GSMT Fig. 3b)
def test_snippet_labels_centre_rule_hand_checked():
    # [2, 5) owns snippets 2, 3, 4; [6.5, 7.5) owns snippet 6 (centre 6.5 >= 6.5) but not 7 (7.5 < 7.5 fails);
    # [8.6, 9.4) holds no centre, so it owns nothing
    segments = torch.tensor([[2.0, 5.0], [6.5, 7.5], [8.6, 9.4]])
    out = snippet_labels(segments, torch.tensor([0, 1, 2]), num_snippets=10, num_classes=3)
    assert out.tolist() == [3, 3, 0, 0, 0, 3, 1, 3, 3, 3]
    assert out.dtype == torch.int64


def test_snippet_labels_overlap_rule_shortest_then_lower_index():
    segments = torch.tensor([[0.0, 8.0], [2.0, 4.0], [5.0, 7.0], [5.0, 7.0]])
    out = snippet_labels(segments, torch.tensor([0, 1, 2, 0]), num_snippets=8, num_classes=3)
    # the short instances win over the long one; the tie [5, 7) twice goes to index 2 (class 2), not 3 (class 0)
    assert out.tolist() == [0, 0, 1, 1, 0, 2, 2, 0]
    assert snippet_instances(segments, 8).tolist() == [0, 0, 1, 1, 0, 2, 2, 0]


@settings(deadline=None, max_examples=50)
@given(videos())
def test_snippet_labels_match_brute_force(video):
    T, segments, labels = video
    owners = py_owner(segments.tolist(), T)
    expected = [labels[o].item() if o >= 0 else K for o in owners]
    assert snippet_labels(segments, labels, T, K).tolist() == expected
    assert snippet_instances(segments, T, labels).tolist() == owners


# ---------------------------------------------------------------- global masks (GSMT Fig. 3c)
@settings(deadline=None, max_examples=50)
@given(videos())
def test_global_mask_columns(video):
    T, segments, labels = video
    masks, valid = global_masks(segments, T, labels)
    assert masks.shape == (T, T) and valid.shape == (T,) and masks.dtype == segments.dtype
    owners = py_owner(segments.tolist(), T)
    assert valid.tolist() == [o >= 0 for o in owners]
    assert valid.tolist() == (snippet_labels(segments, labels, T, K) != K).tolist()
    for t, o in enumerate(owners):
        if o < 0:
            assert masks[:, t].sum() == 0  # background columns carry no mask
        else:
            s, e = segments[o].tolist()
            expected = [1.0 if s <= k + 0.5 < e else 0.0 for k in range(T)]
            assert masks[:, t].tolist() == expected  # the full binary mask of its own instance
            assert masks[t, t] == 1


def test_global_mask_overlap_uses_shortest_instance():
    masks, valid = global_masks(torch.tensor([[0.0, 6.0], [2.0, 4.0]]), 6)
    assert masks[:, 0].tolist() == [1, 1, 1, 1, 1, 1]
    assert masks[:, 2].tolist() == [0, 0, 1, 1, 0, 0]  # snippet 2 lies in both; the short one is its instance
    assert valid.all()


# ---------------------------------------------------------------- frame and boundary labels (SegTAD)
@settings(deadline=None, max_examples=40)
@given(videos())
def test_frame_labels(video):
    T, segments, labels = video
    one_hot = frame_labels(segments, labels, T, K)
    assert one_hot.shape == (T, K + 1)
    assert one_hot.argmax(-1).tolist() == snippet_labels(segments, labels, T, K).tolist()
    assert (one_hot.sum(-1) == 1).all()
    multi = frame_labels(segments, labels, T, K, multi_label=True)
    for t in range(T):
        classes = {int(labels[n]) for n, (s, e) in enumerate(segments.tolist()) if s <= t + 0.5 < e}
        expected = [1.0 if (c in classes or (c == K and not classes)) else 0.0 for c in range(K + 1)]
        assert multi[t].tolist() == expected


def test_boundary_labels_hand_checked():
    segments = torch.tensor([[2.0, 6.0], [8.4, 9.2]])  # the second holds centre 8.5 only
    starts, ends = boundary_labels(segments, 10)
    assert starts.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 1, 0]
    assert ends.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    # widened (BMN width 3): start region [0.5, 3.5] covers half of snippet 0, all of 1 and 2, half of 3
    starts, ends = boundary_labels(torch.tensor([[2.0, 6.0]]), 10, width=3.0)
    assert starts.tolist() == [0.5, 1, 1, 0.5, 0, 0, 0, 0, 0, 0]
    assert ends.tolist() == [0, 0, 0, 0, 0.5, 1, 1, 0.5, 0, 0]


@settings(deadline=None, max_examples=40)
@given(videos(), st.floats(0.1, 6.0))
def test_boundary_labels_properties(video, width):
    T, segments, labels = video
    starts, ends = boundary_labels(segments, T, labels=labels)
    owned = [any(s <= t + 0.5 < e for t in range(T)) for s, e in segments.tolist()]
    assert starts.sum() <= sum(owned) and ends.sum() <= sum(owned)
    inside = (snippet_instances(segments, T) >= 0) | (frame_labels(segments, labels, T, K, True)[:, :K].sum(-1) > 0)
    assert not (starts.bool() & ~inside).any() and not (ends.bool() & ~inside).any()
    soft_s, soft_e = boundary_labels(segments, T, width=width, labels=labels)
    for soft in (soft_s, soft_e):
        assert ((soft >= 0) & (soft <= 1 + 1e-12)).all()
    for s, _ in segments.tolist():  # the snippet holding a start boundary is covered by min(1, width/2) at least
        t = min(math.floor(s), T - 1)
        assert soft_s[t] >= min(1.0, width / 2, s - t + width / 2, t + 1 - s + width / 2) - 1e-9


# ---------------------------------------------------------------- BM map and sparse proposals
@settings(deadline=None, max_examples=40)
@given(videos(integer=True, min_instances=1), st.integers(1, 24))
def test_bm_map_is_one_exactly_at_ground_truth(video, max_duration):
    T, segments, labels = video
    bm = boundary_matching_map(segments, T, max_duration, labels)
    assert bm.shape == (max_duration, T)
    assert ((bm >= 0) & (bm <= 1)).all()
    gt_cells = {(int(e - s - 1), int(s)) for s, e in segments.tolist() if e - s <= max_duration}
    ones = {tuple(c) for c in (bm == 1).nonzero().tolist()}
    assert ones == gt_cells
    valid = boundary_matching_valid(T, max_duration)
    assert (bm[~valid] == 0).all()
    for d, t in [(0, 0), (max_duration - 1, 0), (0, T - 1)]:
        if valid[d, t]:
            expected = max(py_iou([t, t + d + 1], g) for g in segments.tolist())
            assert bm[d, t].item() == pytest.approx(expected)


@settings(deadline=None, max_examples=30)
@given(videos(), st.sampled_from([1, 2, 3, 4]), st.floats(0.0, 1.0))
def test_sparse_proposal_targets(video, eta, threshold):
    T, segments, labels = video
    props = sparse_proposals(T, eta, dtype=torch.float64)
    expected = [[i, i + j] for i in range(0, T, eta) for j in range(eta, T + 1, eta) if i + j <= T]
    assert props.tolist() == expected  # Eq. 8: start and length multiples of eta
    out = sparse_proposal_targets(segments, T, eta, threshold, labels=labels)
    best = [max([py_iou(p, g) for g in segments.tolist()], default=0.0) for p in expected]
    assert out["iou"].tolist() == pytest.approx(best)
    assert out["positive"].tolist() == [b > threshold for b in out["iou"].tolist()]


@settings(deadline=None, max_examples=30)
@given(videos(), st.floats(0.0, 1.0))
def test_tiou_assign_one_to_many(video, threshold):
    T, segments, labels = video
    proposals = sparse_proposals(T, 1, dtype=torch.float64)  # dense: every [i, j)
    out = tiou_assign(proposals, segments, labels, K, threshold, num_snippets=T)
    for p, iou, idx, cls, pos in zip(proposals.tolist(), out["iou"].tolist(), out["gt_index"].tolist(),
                                     out["labels"].tolist(), out["positive"].tolist()):
        ious = [py_iou(p, g) for g in segments.tolist()]
        best = max(ious, default=0.0)
        assert iou == pytest.approx(best)
        assert pos == (best > threshold)
        if pos:
            assert ious[idx] == pytest.approx(best) and cls == labels[idx]
        else:
            assert idx == -1 and cls == K


# ---------------------------------------------------------------- one-to-one matching
@settings(deadline=None, max_examples=40)
@given(st.integers(1, 5), st.integers(1, 5), st.data())
def test_hungarian_is_optimal(q, n, data):
    cost = torch.tensor(data.draw(st.lists(st.lists(st.floats(-10, 10), min_size=n, max_size=n),
                                           min_size=q, max_size=q)), dtype=torch.float64)
    rows, cols = hungarian_match(cost)
    assert len(rows) == min(q, n) and len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    k = min(q, n)  # brute force: every way to pair k rows with k columns
    best = min(sum(cost[r, c] for r, c in zip(rs, cs))
               for rs in itertools.combinations(range(q), k) for cs in itertools.permutations(range(n), k))
    assert float(cost[rows, cols].sum()) == pytest.approx(float(best), abs=1e-9)


@st.composite
def predictions(draw, T, q):
    starts = draw(st.lists(st.floats(0, T - 1), min_size=q, max_size=q))
    widths = draw(st.lists(st.floats(0.1, T / 2), min_size=q, max_size=q))
    segs = torch.tensor([[s, s + w] for s, w in zip(starts, widths)], dtype=torch.float64)
    logits = torch.tensor(draw(st.lists(st.lists(st.floats(-4, 4), min_size=K, max_size=K), min_size=q, max_size=q)),
                          dtype=torch.float64)
    return logits, segs


@settings(deadline=None, max_examples=30)
@given(videos(min_instances=1, max_instances=4), st.integers(1, 5), st.sampled_from(["focal", "prob"]), st.data())
def test_set_match_optimal_against_brute_force(video, q, class_cost, data):
    T, segments, labels = video
    logits, preds = data.draw(predictions(T, q))
    cost = matching_cost(logits, preds, segments, labels, T, class_cost=class_cost)
    n = len(segments)
    # the cost terms, written out for one pair
    p, g, c = 0, 0, int(labels[0])
    l1 = (abs(preds[p, 0] - segments[g, 0]) + abs(preds[p, 1] - segments[g, 1])) / T
    giou = segment_giou(preds[p : p + 1], segments[g : g + 1])[0, 0]
    if class_cost == "prob":
        cls = -logits[p].softmax(-1)[c]
    else:
        prob = logits[p, c].sigmoid()
        cls = 0.25 * (1 - prob) ** 2 * -prob.log() - 0.75 * prob**2 * -(1 - prob).log()
    assert cost[p, g].item() == pytest.approx((2 * cls + 5 * l1 - 2 * giou).item(), rel=1e-6, abs=1e-9)
    rows, cols = set_match(logits, preds, segments, labels, T, class_cost=class_cost)
    k = min(q, n)
    assert len(rows) == k
    brute = min(sum(cost[r, c] for r, c in zip(rs, cs))
                for rs in itertools.combinations(range(q), k) for cs in itertools.permutations(range(n), k))
    assert float(cost[rows, cols].sum()) == pytest.approx(float(brute), abs=1e-9)


def test_set_match_batch_skips_padding():
    segments, labels = pad_batch([(torch.tensor([[1.0, 3.0]]), torch.tensor([2])),
                                  (torch.tensor([[0.0, 2.0], [5.0, 9.0]]), torch.tensor([0, 1]))])
    preds = torch.tensor([[[5.0, 9.0], [1.0, 3.0], [0.0, 1.0]]] * 2, dtype=torch.float64)
    logits = torch.zeros(2, 3, K, dtype=torch.float64)
    out = set_match(logits, preds, segments, labels, 10)
    assert [r.tolist() for r in out[0]] == [[1], [0]]  # the one real instance goes to the identical prediction
    assert out[1][0].tolist() == [0, 2] and out[1][1].tolist() == [1, 0]


# ---------------------------------------------------------------- ActionFormer centre sampling
def test_centre_sampling_hand_checked():
    out = centre_sampling_assign(torch.tensor([[2.0, 6.0]]), torch.tensor([1]), 12, K,
                                 strides=(1, 2), regression_ranges=((0, 4), (4, 8)), radius=1.5)
    assert out["points"].tolist()[:12] == [t + 0.5 for t in range(12)]
    assert out["points"].tolist()[12:] == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    # level 0: centre region [2.5, 5.5] holds 3.5 and 4.5 strictly; both reach <= 4.
    # level 1 (radius 3): region [2, 6] holds points 3 and 5; their reach is 3 < 4, out of level 1's range.
    assert (out["gt_index"] == 0).nonzero()[:, 0].tolist() == [3, 4]
    assert (out["labels"] != K).nonzero()[:, 0].tolist() == [3, 4]
    assert out["labels"][[3, 4]].tolist() == [1, 1]
    assert out["offsets"][3].tolist() == [1.5, 2.5] and out["offsets"][4].tolist() == [2.5, 1.5]


@settings(deadline=None, max_examples=40)
@given(videos(max_instances=4), st.floats(0.5, 3.0))
def test_centre_sampling_properties(video, radius):
    T, segments, labels = video
    ranges = ((0, 2), (2, 4), (4, 8), (8, math.inf))
    strides = (1, 2, 4, 8)
    out = centre_sampling_assign(segments, labels, T, K, strides=strides, regression_ranges=ranges, radius=radius)
    for i in (out["gt_index"] >= 0).nonzero()[:, 0].tolist():
        p, s_l, lvl, g = out["points"][i].item(), out["strides"][i].item(), out["levels"][i].item(), out["gt_index"][i]
        s, e = segments[g].tolist()
        assert s < p < e and abs(p - (s + e) / 2) < radius * s_l
        assert ranges[lvl][0] <= max(p - s, e - p) <= ranges[lvl][1]
        assert out["labels"][i] == labels[g]
        left, right = out["offsets"][i].tolist()
        assert p - left * s_l == pytest.approx(s) and p + right * s_l == pytest.approx(e)
    negatives = out["gt_index"] < 0
    assert (out["labels"][negatives] == K).all() and (out["offsets"][negatives] == 0).all()


# ---------------------------------------------------------------- single video == padded batch
def every_target(segments, labels, T):
    """Every label-assignment function on one video (N, 2)/(N,) or a padded batch (B, N, 2)/(B, N)."""
    return {
        "snippet_labels": snippet_labels(segments, labels, T, K),
        "global_masks": global_masks(segments, T, labels),
        "frame_labels": frame_labels(segments, labels, T, K, multi_label=True),
        "boundary_labels": boundary_labels(segments, T, width=2.0, labels=labels),
        "bm": boundary_matching_map(segments, T, 6, labels),
        "sparse": sparse_proposal_targets(segments, T, 2, labels=labels)["iou"],
        "tiou": tiou_assign(sparse_proposals(T, 2, dtype=torch.float64), segments, labels, K, num_snippets=T)["labels"],
        "centre": centre_sampling_assign(segments, labels, T, K)["offsets"],
    }


@settings(deadline=None, max_examples=15)
@given(st.lists(videos(), min_size=1, max_size=3), st.data())
def test_batch_equals_single(videos_, data):
    T = data.draw(st.integers(max(v[0] for v in videos_), 26))  # one T for the batch, at least each video's
    segs, labs = pad_batch([(s, l) for _, s, l in videos_])
    batched = every_target(segs, labs, T)
    for b, (_, s, l) in enumerate(videos_):
        for name, value in every_target(s, l, T).items():
            got = batched[name]
            if isinstance(value, tuple):
                for x, y in zip(value, got):
                    torch.testing.assert_close(y[b], x, msg=name)
            else:
                torch.testing.assert_close(got[b], value, msg=name)


def test_empty_video_is_all_background():
    empty, none = torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)
    assert snippet_labels(empty, none, 5, K).tolist() == [K] * 5
    masks, valid = global_masks(empty, 5)
    assert masks.sum() == 0 and not valid.any()
    assert boundary_matching_map(empty, 5, 3).sum() == 0
    assert (centre_sampling_assign(empty, none, 5, K)["labels"] == K).all()
    assert not tiou_assign(torch.tensor([[0.0, 2.0]]), empty, none, K, num_snippets=5)["positive"].any()


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("segments, labels, match", [
    ([[3.0, 3.0]], [0], "start < end"),
    ([[4.0, 2.0]], [0], "start < end"),
    ([[-1.0, 2.0]], [0], "0 <= start < end <= num_snippets=10"),
    ([[2.0, 10.5]], [0], "0 <= start < end <= num_snippets=10"),
    ([[float("nan"), 2.0]], [0], "finite"),
    ([[1.0, 2.0]], [3], r"labels must be 0\.\.2"),
    ([[1.0, 2.0]], [-2], r"labels must be 0\.\.2"),
    ([[1.0, 2.0]], [0, 1], r"labels must have shape \(1,\)"),
    ([1.0, 2.0], [0], r"segments must have shape \(N, 2\)"),
])
def test_malformed_input(segments, labels, match):
    with pytest.raises(ValueError, match=match):
        snippet_labels(torch.tensor(segments), torch.tensor(labels), 10, K)


def test_malformed_input_other_functions():
    with pytest.raises(TypeError, match="labels must be an integer"):
        snippet_labels(torch.tensor([[1.0, 2.0]]), torch.tensor([0.0]), 10, K)
    padded = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]])
    with pytest.raises(ValueError, match="pad batches with label -1"):
        global_masks(padded, 10)  # padding rows need labels = -1 to be told apart
    assert global_masks(padded, 10, labels=torch.tensor([[0, -1]]))[1].sum() == 1
    with pytest.raises(ValueError, match="num_snippets"):
        boundary_matching_map(torch.tensor([[1.0, 2.0]]), 0, 4)
    with pytest.raises(ValueError, match="max_duration"):
        boundary_matching_map(torch.tensor([[1.0, 2.0]]), 10, 0)
    with pytest.raises(ValueError, match="width"):
        boundary_labels(torch.tensor([[1.0, 2.0]]), 10, width=-1)
    with pytest.raises(ValueError, match="cost must be finite"):
        hungarian_match(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="class_cost"):
        matching_cost(torch.zeros(2, K), torch.zeros(2, 2), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 4,
                      class_cost="ce")
    with pytest.raises(ValueError, match="pred_segments"):
        set_match(torch.zeros(2, K), torch.zeros(3, 2), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 4)
    with pytest.raises(ValueError, match="pred_segments must have start <= end"):
        set_match(torch.zeros(1, K), torch.tensor([[2.0, 1.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 4)
    with pytest.raises(ValueError, match="proposals must have start <= end"):
        tiou_assign(torch.tensor([[2.0, 1.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), K)
    with pytest.raises(ValueError, match="batched set_match"):
        set_match(torch.zeros(2, 1, K), torch.zeros(3, 1, 2), torch.zeros(2, 1, 2), torch.zeros(2, 1), 4)
    with pytest.raises(ValueError, match="regression_ranges"):
        centre_sampling_assign(torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 4, K, strides=(1, 2),
                               regression_ranges=((0, 4),))


# ---------------------------------------------------------------- CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    segs, labs = pad_batch([(torch.tensor([[2.0, 9.0], [4.0, 5.5]]), torch.tensor([0, 2])),
                            (torch.tensor([[10.0, 30.0]]), torch.tensor([1]))])
    cuda = torch.device("cuda")
    T = 32
    pairs = [
        (snippet_labels, (segs, labs, T, K)),
        (frame_labels, (segs, labs, T, K)),
        (global_masks, (segs, T, labs)),
        (boundary_labels, (segs, T, 3.0, labs)),
        (boundary_matching_map, (segs, T, 16, labs)),
    ]
    for fn, args in pairs:
        cpu_out = fn(*args)
        gpu_out = fn(*[a.to(cuda) if isinstance(a, torch.Tensor) else a for a in args])
        cpu_out = cpu_out if isinstance(cpu_out, tuple) else (cpu_out,)
        gpu_out = gpu_out if isinstance(gpu_out, tuple) else (gpu_out,)
        for x, y in zip(cpu_out, gpu_out):
            assert y.device.type == "cuda"
            torch.testing.assert_close(y.cpu(), x)
    for name, value in centre_sampling_assign(segs.to(cuda), labs.to(cuda), T, K).items():
        assert value.device.type == "cuda", name
    assert tiou_assign(sparse_proposals(T, 4, device=cuda), segs.to(cuda), labs.to(cuda), K)["iou"].device.type == "cuda"
    rows, cols = set_match(torch.zeros(2, 3, K, device=cuda), torch.tensor([[[0.0, 2.0]] * 3] * 2, device=cuda),
                           segs.to(cuda), labs.to(cuda), T)[0]
    assert rows.device.type == "cuda" and cols.device.type == "cuda"
