"""SegTAD: 1D-SSN shapes and padding, the snippet kNN graph, edge convolution, the sparse pattern, neighbourhood
sampling, PDN scores and losses on hand-made cases, branch switches, decoding, stages, cost, CUDA."""
import math

import pytest
import torch

from tadlab.labels import sparse_proposal_targets, sparse_proposals
from tadlab.models import SegTAD
from tadlab.models.graph import EdgeConv, knn_graph
from tadlab.models.segtad import (
    SSN1D,
    SegTADConfig,
    decode_proposals,
    scaled_dilations,
    segment_class_scores,
    video_class_scores,
)
from tadlab.models.segtad_pdn import (
    deduplicate,
    local_neighbours,
    proposal_neighbour_table,
    proposal_points,
    sample_along,
    sample_neighbourhoods,
)
from tadlab.segments import segment_iou

from detector_checks import assert_reproducible_step, needs_cuda, to_device, train_steps

C, K, T, H = 8, 3, 44, 16  # T = 44 is not a multiple of 8: the 1D-SSN pads it to 48 (encoded length 6)


def small_model(**kwargs) -> SegTAD:
    torch.manual_seed(0)
    return SegTAD(C, K, T, **{"hidden": H, "eta": 4, "graph_k": 2, "seeds": 6, "pdn_k": 2, **kwargs})


def batch_of(segments_per_video, labels_per_video, length=T):
    count = max(len(s) for s in segments_per_video)
    segments = torch.zeros(len(segments_per_video), count, 2)
    labels = torch.full((len(segments_per_video), count), -1, dtype=torch.int64)
    for b, (seg, lab) in enumerate(zip(segments_per_video, labels_per_video)):
        segments[b, :len(seg)] = torch.tensor(seg, dtype=torch.float32)
        labels[b, :len(lab)] = torch.tensor(lab)
    features = torch.randn(len(segments_per_video), C, length, generator=torch.Generator().manual_seed(1))
    return {"video_ids": [f"v{b}" for b in range(len(labels))], "features": features, "segments": segments,
            "labels": labels, "durations": torch.full((len(labels),), float(length), dtype=torch.float64)}


BATCH = batch_of([[[4.0, 14.0], [20.0, 36.0]], [[8.0, 24.0]]], [[0, 2], [1]])


# ------------------------------------------------------------------------------------------------- 1D-SSN shapes
@pytest.mark.parametrize("length", [40, 44, 37, 64])
def test_ssn_shapes_for_any_length(length):
    config = SegTADConfig(C, K, length, hidden=H, graph_k=2)
    outputs = SSN1D(config)(torch.randn(2, C, length))
    assert outputs["logits"].shape == (2, K + 1, length)
    assert outputs["features"].shape == (2, H, length)
    assert outputs["start_logits"].shape == outputs["end_logits"].shape == (2, length)
    assert outputs["snippet_graph"].shape == (2, math.ceil(length / 8), 2)


def test_length_not_a_multiple_of_8_is_padded_by_repeating_the_last_snippet_and_cropped():
    ssn = SSN1D(SegTADConfig(C, K, T, hidden=H, graph_k=2)).eval()
    features = torch.randn(2, C, T)
    padded = torch.cat([features, features[..., -1:].expand(-1, -1, 48 - T)], dim=2)
    with torch.no_grad():
        a, b = ssn(features), ssn(padded)
    for key in ("features", "logits", "start_logits", "end_logits"):
        assert torch.allclose(a[key], b[key][..., :T], atol=1e-6), key
    assert torch.equal(a["snippet_graph"], b["snippet_graph"])


def test_center_features_removes_each_videos_per_channel_offset():
    ssn = SSN1D(SegTADConfig(C, K, T, hidden=H, graph_k=2, center_features=True)).eval()
    features = torch.randn(2, C, T)
    shifted = features + torch.randn(2, C, 1)  # a constant offset per video and channel
    with torch.no_grad():
        a, b = ssn(features), ssn(shifted)
    assert torch.allclose(a["logits"], b["logits"], atol=1e-5)
    plain = SSN1D(SegTADConfig(C, K, T, hidden=H, graph_k=2)).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(features)["logits"], plain(shifted)["logits"], atol=1e-3)


def test_too_short_or_mismatched_lengths_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match=r"num_snippets=20 encodes to ceil\(T/8\) = 3 .* graph_k=4"):
        SegTAD(C, K, 20, hidden=H, graph_k=4)
    SegTAD(C, K, 20, hidden=H, graph_k=2, eta=4)  # 3 encoded snippets hold 2 neighbours each
    SegTAD(C, K, 20, hidden=H, graph=False, eta=4)  # no graph, no constraint
    with pytest.raises(ValueError, match="num_snippets must be at least 8"):
        SegTAD(C, K, 7, hidden=H, graph=False)
    with pytest.raises(ValueError, match=r"features must have shape \(B, 8, 44\)"):
        small_model()(torch.randn(1, C, T + 4))
    with pytest.raises(TypeError, match="features"):
        small_model()(torch.randn(1, C, T).numpy())


def test_dilations_scale_with_the_encoded_length():
    assert scaled_dilations(125) == (1, 10, 20, 30)  # the paper's, at T = 1000
    assert scaled_dilations(13) == scaled_dilations(16) == (1, 2, 3, 4)  # T = 100 and 128: kept distinct
    assert scaled_dilations(50) == (1, 4, 8, 12)
    assert scaled_dilations(32) == (1, 3, 5, 8)  # T = 256 (the "thumos" world)
    assert SegTADConfig(C, K, 100).dilations == (1, 2, 3, 4)
    assert SegTADConfig(C, K, 100, dilations=(1, 3)).dilations == (1, 3)
    model = small_model(dilations=(1, 5))
    assert [conv.dilation[0] for conv in model.ssn.pag.atrous] == [1, 5]


def test_encoder_strides_set_the_encoded_length_and_keep_every_output_at_t():
    assert SegTADConfig(C, K, 100).encoder_strides == (2, 2, 2) and SegTADConfig(C, K, 100).stride == 8  # the paper
    config = SegTADConfig(C, K, T, hidden=H, graph_k=2, encoder_strides=(1, 1, 2))
    assert config.stride == 2 and config.encoded_length == 22 and config.dilations == scaled_dilations(22)
    ssn = SSN1D(config)
    assert [conv.stride[0] for conv in ssn.encoder] == [1, 1, 2]
    outputs = ssn(torch.randn(2, C, T))
    assert outputs["logits"].shape == (2, K + 1, T) and outputs["snippet_graph"].shape == (2, 22, 2)
    unstrided = SSN1D(SegTADConfig(C, K, 37, hidden=H, graph_k=2, encoder_strides=(1, 1)))  # two layers, no padding
    assert unstrided(torch.randn(1, C, 37))["snippet_graph"].shape == (1, 37, 2)
    for bad in [(2,), (2, 0, 2), (2, 2.0, 2)]:
        with pytest.raises(ValueError, match="encoder_strides"):
            SegTADConfig(C, K, T, encoder_strides=bad)
    with pytest.raises(ValueError, match=r"encodes to ceil\(T/4\) = 2 .* graph_k=2"):
        SegTADConfig(C, K, 8, graph_k=2, encoder_strides=(2, 2))


# -------------------------------------------------------------------------------------------- graph pieces
def test_knn_graph_matches_brute_force():
    features = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(3))
    neighbours = knn_graph(features, 3)
    assert neighbours.shape == (2, 12, 3)
    for b in range(2):
        for i in range(12):
            similarity = [(-float(((features[b, :, i] - features[b, :, j]) ** 2).mean()), j)
                          for j in range(12) if j != i]
            expected = [j for _, j in sorted(similarity, reverse=True)[:3]]
            assert neighbours[b, i].tolist() == expected
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(features, 12)


def test_edge_convolution_on_a_hand_made_graph():
    conv = EdgeConv(1, 1)
    with torch.no_grad():
        conv.linear.weight.copy_(torch.tensor([[2.0, 1.0]]))  # 2 x + 1 (mean of neighbours - x)
        conv.linear.bias.zero_()
    nodes = torch.tensor([[[1.0], [3.0], [7.0]]])
    neighbours = torch.tensor([[[1, 2], [0, 0], [1, 1]]])
    # node 0: 2 + (5 - 1) = 6; node 1: 6 + (1 - 3) = 4; node 2: 14 + (3 - 7) = 10
    assert conv(nodes, neighbours)[0, :, 0].tolist() == [6.0, 4.0, 10.0]
    valid = torch.tensor([[[True, False], [True, True], [False, False]]])
    # node 0 keeps neighbour 1 only: 2 + (3 - 1) = 4; node 2 has none: A x = 0, so 14 - 7 = 7
    assert conv(nodes, neighbours, valid)[0, :, 0].tolist() == [4.0, 4.0, 7.0]
    with torch.no_grad():
        conv.linear.weight.copy_(torch.tensor([[0.0, -1.0]]))
    assert conv(nodes, neighbours)[0, :, 0].tolist() == [0.0, 2.0, 4.0]  # the ReLU clips node 0's -4


def test_edge_convolution_with_cosine_attention():
    conv = EdgeConv(2, 2, attention=True)
    with torch.no_grad():
        conv.linear.weight.copy_(torch.cat([torch.zeros(2, 2), torch.eye(2)], dim=1))  # output = A x - x
        conv.linear.bias.zero_()
    nodes = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])
    neighbours = torch.tensor([[[1, 2], [2, 2], [0, 0]]])
    # node 0: cos with node 1 is 0, with node 2 is 1/sqrt(2): A x = (3, 3) / sqrt(2) / 2, minus (1, 0)
    a = 3 / math.sqrt(2) / 2
    out = conv(nodes, neighbours)[0]
    assert torch.allclose(out[0], torch.tensor([max(a - 1, 0.0), a]), atol=1e-6)
    assert torch.allclose(out[1], torch.tensor([3 / math.sqrt(2), 3 / math.sqrt(2) - 2]), atol=1e-6)
    assert torch.equal(out[2], torch.zeros(2))  # A x - x = (1/sqrt(2) - 3, -3): the ReLU clips both


# ------------------------------------------------------------------------------------------ sparse pattern, PDN
@pytest.mark.parametrize("length, eta, max_duration", [(44, 4, None), (100, 4, None), (128, 2, 32), (1000, 8, None)])
def test_sparse_pattern_size(length, eta, max_duration):
    starts = range(0, length, eta)
    longest = length if max_duration is None else max_duration
    expected = sum(min(length - s, longest) // eta for s in starts)
    assert sparse_proposals(length, eta, max_duration).shape == (expected, 2)
    if length == 100:
        assert expected == 325
    if length == 1000:
        assert expected == 7875  # the paper's T = 1000, eta = 8


def test_the_model_uses_the_pattern_of_the_labels():
    model = small_model(max_duration=20)
    assert torch.equal(model.pdn.proposals, sparse_proposals(T, 4, 20))
    assert model.pdn.num_proposals == sum(min(T - s, 20) // 4 for s in range(0, T, 4))


def brute_force_table(proposals, width):
    iou = segment_iou(proposals, proposals)
    rows = []
    for i in range(len(proposals)):
        order = sorted((j for j in range(len(proposals)) if j != i), key=lambda j: (-float(iou[i, j]), j))
        rows.append(order[:width])
    return torch.tensor(rows)


def test_neighbour_table_matches_brute_force_in_chunks():
    proposals = sparse_proposals(24, 4)
    assert torch.equal(proposal_neighbour_table(proposals, 5, chunk=7), brute_force_table(proposals, 5))


def test_neighbourhood_sampling_counts_half_positive_and_neighbours():
    proposals = sparse_proposals(T, 4)
    table = proposal_neighbour_table(proposals, 8)
    targets = sparse_proposal_targets(BATCH["segments"], T, 4, labels=BATCH["labels"])
    positive = targets["positive"]
    seeds, k = 10, 3
    ids = sample_neighbourhoods(positive, table, seeds, k, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (2, seeds * (1 + k + k * k))
    for b in range(2):
        assert int(positive[b].sum()) >= seeds // 2  # enough positives: no repeats among the seeds
        assert positive[b, ids[b, :seeds // 2]].all() and not positive[b, ids[b, seeds // 2:seeds]].any()
        assert len(set(ids[b, :seeds // 2].tolist())) == seeds // 2
        brute = brute_force_table(proposals, k)
        for i in range(seeds):
            assert ids[b, seeds + i * k: seeds + (i + 1) * k].tolist() == brute[ids[b, i]].tolist()
        first = ids[b, seeds: seeds + seeds * k]
        for j in range(seeds * k):
            start = seeds + seeds * k + j * k
            assert ids[b, start: start + k].tolist() == brute[first[j]].tolist()


def test_neighbourhood_sampling_with_few_or_no_positives():
    table = proposal_neighbour_table(sparse_proposals(T, 4), 4)
    positive = torch.zeros(2, table.shape[0], dtype=torch.bool)
    positive[0, [3, 17]] = True  # two positives for five positive seeds: both, repeated in turn
    ids = sample_neighbourhoods(positive, table, 10, 2, generator=torch.Generator().manual_seed(0))
    assert set(ids[0, :5].tolist()) == {3, 17} and positive[0, ids[0, :5]].all()
    assert not positive[1, ids[1, :10]].any()  # no positive at all: every seed negative
    with pytest.raises(ValueError, match="positive must be a bool tensor"):
        sample_neighbourhoods(positive.float(), table, 10, 2)
    with pytest.raises(ValueError, match="k must be at most"):
        sample_neighbourhoods(positive, table, 10, 5)


def test_deduplicate_keeps_each_proposal_once_with_its_count():
    ids = torch.tensor([[5, 2, 5, 5, 9], [4, 4, 4, 4, 4]])
    unique, multiplicity = deduplicate(ids, 12)
    assert unique.tolist() == [[2, 5, 9], [4, 4, 4]] and multiplicity.tolist() == [[1, 3, 1], [5, 0, 0]]


def test_local_neighbours_are_the_first_present_table_neighbours():
    table = torch.tensor([[1, 2, 3], [0, 2, 3], [3, 1, 0], [2, 0, 1]])
    everyone = torch.arange(4)[None]
    neighbours, valid = local_neighbours(everyone, table, 2)
    assert torch.equal(neighbours[0], table[:, :2]) and valid.all()
    ids = torch.tensor([[2, 0, 2]])  # proposal 2 twice: its first position (0) is the one linked to
    neighbours, valid = local_neighbours(ids, table, 2)
    # proposal 2's table: 3 (absent), 1 (absent), 0 (position 1) -> one valid neighbour
    assert valid[0].tolist() == [[True, False], [True, False], [True, False]]
    assert neighbours[0, :, 0].tolist() == [1, 0, 1]


def test_proposal_features_are_sampled_by_linear_interpolation():
    features = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])  # snippet t's value sits at t + 0.5
    positions = torch.tensor([[0.5, 1.0, 3.5, 4.0, 0.0, -1.0, 10.0]])
    assert sample_along(features, positions)[0, :, 0].tolist() == [1.0, 1.5, 4.0, 2.0, 0.5, 0.0, 0.0]
    points = proposal_points(torch.tensor([[2.0, 6.0]]), 4, 0.0)
    assert points.tolist() == [[2.5, 3.5, 4.5, 5.5]]
    assert proposal_points(torch.tensor([[2.0, 6.0]]), 4, 0.25).tolist() == [[1.75, 3.25, 4.75, 6.25]]


def test_pdn_on_sampled_unique_proposals_equals_the_list_with_repeats():
    model = small_model()
    y = torch.randn(2, H, T)
    table = model.pdn.neighbour_table
    positive = sparse_proposal_targets(BATCH["segments"], T, 4, labels=BATCH["labels"])["positive"]
    ids = sample_neighbourhoods(positive, table, 6, 2, generator=torch.Generator().manual_seed(2))
    unique, multiplicity = deduplicate(ids, model.pdn.num_proposals)
    with torch.no_grad():
        full, once = model.pdn(y, ids), model.pdn(y, unique)
    for b in range(2):
        for s, proposal in enumerate(ids[b].tolist()):
            u = unique[b].tolist().index(proposal)
            assert torch.allclose(full[b, s], once[b, u], atol=1e-5)


def test_pdn_graph_switch_decides_whether_neighbours_matter():
    for graph in (True, False):
        model = small_model(pdn_graph=graph).eval()
        y = torch.randn(1, H, T)
        with torch.no_grad():
            everyone = model.pdn(y)[0, 7]
            alone = model.pdn(y, torch.tensor([[7]]))[0, 0]  # proposal 7 without any neighbour in the list
        assert torch.allclose(everyone, alone, atol=1e-6) != graph
        kind = type(model.pdn.layers[0]).__name__
        assert kind == ("EdgeConv" if graph else "Linear") and len(model.pdn.layers) == 3


# ---------------------------------------------------------------------------------------------------- loss
def test_loss_terms_with_uninformative_heads():
    """Zero-weight heads: p_t uniform over K+1, start/end 0.5, s1 = s2 = 0.5. Every term has a hand value."""
    model = small_model()
    with torch.no_grad():
        for head in (model.ssn.segmentation_head, model.ssn.start_head[2], model.ssn.end_head[2], model.pdn.score):
            head.weight.zero_()
            head.bias.zero_()
    torch.manual_seed(5)
    with torch.no_grad():
        terms = model.loss(model(BATCH["features"]), BATCH)
    torch.manual_seed(5)  # the same draw of the sampled proposals
    targets = sparse_proposal_targets(BATCH["segments"], T, 4, labels=BATCH["labels"])
    ids = sample_neighbourhoods(targets["positive"], model.pdn.neighbour_table, 6, 2)
    regression = float(((0.5 - targets["iou"].gather(1, ids)) ** 2).mean())
    assert math.isclose(float(terms["segmentation"]), math.log(K + 1), rel_tol=1e-5)
    assert math.isclose(float(terms["auxiliary"]), 2 * math.log(2), rel_tol=1e-5)
    assert math.isclose(float(terms["classification"]), math.log(2), rel_tol=1e-5)
    assert math.isclose(float(terms["regression"]), regression, rel_tol=1e-5)
    assert math.isclose(float(terms["positive"]), float(targets["positive"].gather(1, ids).float().mean()),
                        rel_tol=1e-5)
    assert math.isclose(float(terms["total"]), math.log(K + 1) + 3 * math.log(2) + regression, rel_tol=1e-5)


def test_segmentation_and_auxiliary_losses_vanish_for_perfect_heads():
    """Segmentation logits that are +-30 at the frame labels give L_seg ~ 0; s1, s2 hit their targets exactly."""
    model = small_model()
    targets = model.targets(BATCH)
    logits = 60 * targets["frames"].transpose(1, 2) - 30
    outputs = {"logits": logits, "start_logits": 60 * targets["starts"] - 30, "end_logits": 60 * targets["ends"] - 30,
               "features": torch.randn(2, H, T)}
    with torch.no_grad():
        terms = model.loss(outputs, BATCH)
    assert float(terms["segmentation"]) < 1e-6 and float(terms["auxiliary"]) < 1e-6
    assert float(terms["detection"]) > 0.1  # the PDN is untrained


def test_loss_weights_and_gradients():
    model = small_model()
    terms = model.loss(model(BATCH["features"]), BATCH)
    terms["total"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    weighted = small_model(seg_weight=0.0, det_weight=2.0, aux_weight=0.5)
    torch.manual_seed(0)
    terms = weighted.loss(weighted(BATCH["features"]), BATCH)
    expected = 2 * terms["detection"] + 0.5 * terms["auxiliary"]
    assert torch.allclose(terms["total"], expected)


def test_stages():
    model = small_model(stage="ssn")
    terms = model.loss(model(BATCH["features"]), BATCH)
    assert float(terms["detection"]) == 0 and float(terms["segmentation"].detach()) > 0
    model.eval()
    outputs = model(BATCH["features"])
    assert "iou_scores" not in outputs
    assert len(model.detect(outputs)) == 2  # no PDN: decodes the segmentation
    with pytest.raises(ValueError, match="no PDN scores"):
        model.detect(outputs, decoding="proposals")

    model.stage = "pdn"
    model.train()
    assert not model.ssn.training and model.pdn.training  # the frozen 1D-SSN keeps its BatchNorm statistics
    terms = model.loss(model(BATCH["features"]), BATCH)
    assert float(terms["segmentation"]) == 0 and float(terms["auxiliary"]) == 0
    terms["total"].backward()
    assert all(p.grad is None for p in model.ssn.parameters())
    assert all(p.grad is not None for p in model.pdn.parameters())
    with pytest.raises(ValueError, match="stage"):
        model.stage = "both"


# ---------------------------------------------------------------------------------------------- branch switches
@pytest.mark.parametrize("atrous, graph, global_pool", [(False, True, True), (True, False, True), (True, True, False),
                                                        (True, True, True), (False, False, True)])
def test_pag_branch_switches(atrous, graph, global_pool):
    model = small_model(atrous=atrous, graph=graph, global_pool=global_pool)
    branches = 4 * atrous + graph + global_pool
    assert model.ssn.pag.fuse.in_channels == branches * H
    assert len(model.ssn.pag.atrous) == 4 * atrous and (model.ssn.pag.edge_conv is not None) == graph
    outputs = model(BATCH["features"])
    assert outputs["logits"].shape == (2, K + 1, T)
    assert (outputs["snippet_graph"] is not None) == graph
    model.loss(outputs, BATCH)["total"].backward()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least one PAG branch"):
        small_model(atrous=False, graph=False, global_pool=False)
    for name, value in [("hidden", 0), ("eta", -1), ("seeds", 2.5), ("graph_k", True)]:
        with pytest.raises(ValueError, match=name):
            small_model(**{name: value})
    with pytest.raises(ValueError, match="num_classes"):
        SegTAD(C, 0, T)
    with pytest.raises(ValueError, match="dilations"):
        small_model(dilations=(1, 0))
    with pytest.raises(ValueError, match="iou_threshold"):
        small_model(iou_threshold=1.5)
    with pytest.raises(ValueError, match="det_weight"):
        small_model(det_weight=-1.0)
    with pytest.raises(ValueError, match="pdn_k must be below P"):
        SegTAD(C, K, 16, hidden=H, graph=False, eta=8, pdn_k=4)
    with pytest.raises(ValueError, match="decoding"):
        small_model().detect({}, decoding="dense")
    probs = {"probs": torch.rand(1, K + 1, T).softmax(dim=1)}
    with pytest.raises(ValueError, match="top_k"):
        small_model().detect(probs, decoding="segmentation", top_k=0)
    with pytest.raises(ValueError, match="thresholds"):
        small_model().detect(probs, decoding="segmentation", thresholds=(0.0, 0.5))


# ----------------------------------------------------------------------------------------------------- decoding
def test_segment_class_scores_average_over_the_snippet_centres_inside():
    probs = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.6]]])
    segments = torch.tensor([[[0.0, 2.0], [1.2, 3.6], [2.6, 2.7]]])  # centres 0.5, 1.5 | 1.5, 2.5, 3.5 | none
    scores = segment_class_scores(probs, segments)[0]
    assert torch.allclose(scores[0], torch.tensor([0.15, 0.85]))
    assert torch.allclose(scores[1], torch.tensor([0.3, 0.7]))
    assert torch.allclose(scores[2], torch.tensor([0.3, 0.7]))  # no centre inside: snippet 2, around 2.65


KEEP_ALL = {"method": "hard", "iou_threshold": 1.0}  # hard NMS that drops nothing


def test_decode_proposals_scores_and_classes_by_hand():
    proposals = torch.tensor([[0.0, 2.0], [2.0, 4.0], [0.0, 4.0]])
    scores = torch.tensor([[0.9, 0.5, 0.2]])
    probs = torch.tensor([[[0.8, 0.6, 0.1, 0.1], [0.1, 0.2, 0.7, 0.5], [0.1, 0.2, 0.2, 0.4]]])  # K = 2 + background
    [det] = decode_proposals(proposals, scores, probs, nms=KEEP_ALL)
    # [0, 2): class 0 (0.7 vs 0.15) -> 0.9 x 0.7; [2, 4): class 1 (0.6 vs 0.1) -> 0.5 x 0.6; [0, 4): class 0 (0.4 vs
    # 0.375) -> 0.2 x 0.4
    assert det["segments"].tolist() == [[0.0, 2.0], [2.0, 4.0], [0.0, 4.0]]
    assert torch.allclose(det["scores"], torch.tensor([0.63, 0.3, 0.08]))
    assert det["labels"].tolist() == [0, 1, 0] and det["labels"].dtype == torch.int64
    [two] = decode_proposals(proposals, scores, probs, top_classes=2, nms=KEEP_ALL)
    assert len(two["scores"]) == 6 and torch.all(two["scores"][:-1] >= two["scores"][1:])
    [one] = decode_proposals(proposals, scores, probs, top_k=1, nms=KEEP_ALL)
    assert one["segments"].tolist() == [[0.0, 2.0]]
    # classes="video": the video's mean action probabilities (0.4, 0.375), renormalised -> (0.516, 0.484): class 0
    # for every proposal, scores 0.9, 0.5, 0.2 times 0.4 / 0.775
    video = video_class_scores(probs)
    assert torch.allclose(video, torch.tensor([[0.4, 0.375]]) / 0.775)
    [by_video] = decode_proposals(proposals, scores, probs, classes="video", nms=KEEP_ALL)
    assert by_video["labels"].tolist() == [0, 0, 0]
    assert torch.allclose(by_video["scores"], torch.tensor([0.9, 0.5, 0.2]) * 0.4 / 0.775)
    [two_video] = decode_proposals(proposals, scores, probs, classes="video", top_classes=2, nms=KEEP_ALL)
    assert two_video["labels"].tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="classes"):
        decode_proposals(proposals, scores, probs, classes="segment")
    # class_scores: an external video classifier's (B, K) probabilities take the place of the 1D-SSN's
    [external] = decode_proposals(proposals, scores, probs, class_scores=torch.tensor([[0.25, 0.75]]), nms=KEEP_ALL)
    assert external["labels"].tolist() == [1, 1, 1]
    assert torch.allclose(external["scores"], torch.tensor([0.9, 0.5, 0.2]) * 0.75)
    with pytest.raises(ValueError, match=r"class_scores must be a tensor \(B, K\) = \(1, 2\)"):
        decode_proposals(proposals, scores, probs, class_scores=torch.ones(1, 3))


def test_an_external_video_classifier_gives_segtad_its_classes():
    from tadlab.models import ProposalDetector, VideoClassifier

    model = small_model().eval()
    classifier = VideoClassifier(C, K).eval()
    detector = ProposalDetector(model, classifier).eval()
    features = torch.randn(2, C, T)
    with torch.no_grad():
        outputs = detector(features)
        detections = detector.detect(outputs, top_classes=1)
    video_class = outputs["class_probs"].argmax(dim=1)
    for b, found in enumerate(detections):
        assert len(found["labels"]) > 0 and (found["labels"] == video_class[b]).all()
    with pytest.raises(ValueError, match="class_scores are for decoding='proposals'"):
        model.detect(outputs, decoding="segmentation", class_scores=outputs["class_probs"])


def test_segmentation_decoding_is_class_map_grouping_worked_by_hand():
    probs = torch.zeros(1, 2, 8)
    probs[0, 0] = torch.tensor([0.1, 0.6, 0.9, 0.7, 0.2, 0.8, 0.1, 0.1])
    probs[0, 1] = 1 - probs[0, 0]
    [det] = small_model().detect({"probs": probs}, decoding="segmentation", thresholds=(0.5, 0.85), nms=KEEP_ALL)
    found = {(tuple(s.tolist()), round(float(c), 4)) for s, c in zip(det["segments"], det["scores"])}
    # runs at 0.5: [1, 4) and [5, 6); at 0.85: [2, 3). Score: mean inside minus the mean of the one-snippet flanks
    # (a quarter of the length, at least 1): [1, 4) 2.2/3 - (0.1 + 0.2)/2, [5, 6) 0.8 - (0.2 + 0.1)/2,
    # [2, 3) 0.9 - (0.6 + 0.7)/2
    assert found == {((1.0, 4.0), round(2.2 / 3 - 0.15, 4)), ((5.0, 6.0), 0.65), ((2.0, 3.0), 0.25)}
    assert det["labels"].tolist() == [0, 0, 0]


def test_segmentation_decoding_is_the_shared_class_map_grouping():
    from tadlab.grouping import DEFAULT_THRESHOLDS, group_class_map

    model = small_model().eval()
    with torch.no_grad():
        outputs = model(BATCH["features"])
    for options in ({}, {"thresholds": (0.3, 0.6), "top_k": 5, "nms": KEEP_ALL}):
        ours = model.detect(outputs, decoding="segmentation", **options)
        shared = group_class_map(outputs["probs"], options.get("thresholds", DEFAULT_THRESHOLDS),
                                 top_k=options.get("top_k", 100), nms=options.get("nms"))
        for a, b in zip(ours, shared):
            assert all(torch.equal(a[key], b[key]) for key in ("segments", "scores", "labels"))
    model.stage = "ssn"  # no trained PDN: segmentation decoding by default
    with torch.no_grad():
        default = model.detect(model(BATCH["features"]))
    assert all(torch.equal(a["scores"], b["scores"]) for a, b in zip(default, model.detect(outputs,
                                                                                          decoding="segmentation")))


@pytest.mark.parametrize("decoding", ["proposals", "segmentation"])
def test_detect_format(decoding):
    model = small_model().eval()
    with torch.no_grad():
        outputs = model(BATCH["features"])
    detections = model.detect(outputs, decoding=decoding, top_k=20)
    assert len(detections) == 2
    for det in detections:
        assert set(det) == {"segments", "scores", "labels"}
        assert det["segments"].shape[1] == 2 and 0 < len(det["scores"]) <= 20
        assert det["labels"].dtype == torch.int64 and bool(((det["labels"] >= 0) & (det["labels"] < K)).all())
        assert bool((det["segments"][:, 0] < det["segments"][:, 1]).all())
        assert bool((det["segments"] >= 0).all() and (det["segments"] <= T).all())
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])
    with pytest.raises(ValueError, match="no PDN scores"):
        small_model().detect(small_model()(BATCH["features"]), decoding="proposals")  # training-mode outputs


# ---------------------------------------------------------------------------------- cost, training loop, CUDA
def test_cost_counts_parameters_and_flops():
    model = small_model()
    cost = model.cost()
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    assert cost["flops"] > 2 * C * H * 3 * (T // 2)  # at least the first encoder layer
    assert model.cost(batch_size=2)["flops"] == 2 * cost["flops"]
    assert model.training  # cost() restores the mode


def test_trains_with_fit_and_evaluates():
    from tadlab.data.synthetic import make_world
    from tadlab.train import evaluate, fit

    world = make_world("anet", num_videos=10, seed=0, num_snippets=T, feature_dim=C, num_classes=K)
    model = small_model()
    history = fit(model, world.dataset("training"), epochs=2, batch_size=4, lr=3e-3, device="cpu",
                  progress=False, seed=0)
    assert len(history.train["total"]) == 2 and history.train["detection"][0] > 0
    metrics = evaluate(model, world.dataset("validation"), world.ground_truth, world.class_names, device="cpu")
    assert 0 <= metrics.average_mAP <= 1


def test_same_seed_same_training_step():
    assert_reproducible_step(small_model, lambda: BATCH)


@pytest.mark.cuda
@needs_cuda
def test_trains_and_detects_on_cuda():
    device = torch.device("cuda")
    model = small_model().to(device)
    batch = to_device(BATCH, device)
    terms = train_steps(model, batch, lr=1e-2)
    assert all(v.device.type == "cuda" for v in terms.values())
    model.eval()
    with torch.no_grad():
        outputs = model(batch["features"])
        for decoding in ("proposals", "segmentation"):
            detections = model.detect(outputs, decoding=decoding)
            assert detections[0]["segments"].device.type == "cuda"
            cpu_outputs = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in outputs.items()}
            on_cpu = model.detect(cpu_outputs, decoding=decoding)
            assert torch.allclose(on_cpu[0]["scores"], detections[0]["scores"].cpu(), atol=1e-5)
        model.cpu()
        cpu_model = model(batch["features"].cpu())
    assert torch.allclose(cpu_model["iou_scores"], outputs["iou_scores"].cpu(), atol=1e-4)
