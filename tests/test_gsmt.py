"""GSMT: shapes, loss terms on hand-checked cases, decoding hand-made masks, save/load, determinism, CUDA."""
import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tadlab.labels import global_masks
from tadlab.models.blocks import TransformerEmbedding, make_embedding, sinusoidal_positions
from tadlab.models.gsmt import PAPER_POSITIONAL, GSMT, decode_global_masks, paper_size_cost
from tadlab.models.gsmt_decode import (PAPER_SOFT_NMS, PAPER_SOFT_NMS_SIGMA, _decode_activations, column_scores,
                                       mask_candidates, soft_nms_options)

from detector_checks import assert_reproducible_step, needs_cuda, to_device, train_steps

C, K, T = 12, 3, 16


def small_model(**kwargs) -> GSMT:
    torch.manual_seed(0)
    return GSMT(C, K, T, hidden=16, heads=4, layers=1, **kwargs)


def one_video_batch(segments, labels, features=None):
    segments = torch.tensor(segments, dtype=torch.float32).reshape(1, -1, 2)
    labels = torch.tensor(labels, dtype=torch.int64).reshape(1, -1)
    features = torch.randn(1, C, T) if features is None else features
    return {"video_ids": ["v"], "features": features, "segments": segments, "labels": labels,
            "durations": torch.tensor([float(T)], dtype=torch.float64)}


EMBEDDINGS, POSITIONALS = ["transformer", "cnn", "mstcn"], [None, "learned", "fixed"]


# ------------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("embedding", EMBEDDINGS)
@pytest.mark.parametrize("positional", POSITIONALS)
def test_forward_shapes_for_every_embedding_and_positional_encoding(embedding, positional):
    model = small_model(embedding=embedding, positional=positional)
    outputs = model(torch.randn(2, C, T))
    assert outputs["logits"].shape == outputs["probs"].shape == outputs["regression"].shape == (2, K + 1, T)
    assert outputs["masks"].shape == outputs["mask_logits"].shape == (2, T, T)
    assert torch.allclose(outputs["probs"].sum(1), torch.ones(2, T))
    assert 0 <= float(outputs["masks"].detach().min()) and float(outputs["masks"].detach().max()) <= 1


@pytest.mark.parametrize("kind", EMBEDDINGS)
@pytest.mark.parametrize("positional", POSITIONALS)
def test_every_embedding_accepts_every_positional_encoding(kind, positional):
    torch.manual_seed(0)
    block = make_embedding(kind, 16, positional=positional, num_snippets=T).eval()
    features = torch.randn(3, 16, T)
    with torch.no_grad():
        embedded = block(features)
        assert embedded.shape == (3, 16, T)
        if positional is not None:  # the table is used: zeroing it changes the output
            block.positional.positions.zero_()
            assert not torch.allclose(block(features), embedded, atol=1e-4)
            with pytest.raises(ValueError, match="num_snippets"):  # built for one T
                block(torch.randn(3, 16, T + 1))
    with pytest.raises(ValueError, match="num_snippets"):
        make_embedding(kind, 16, positional=positional or "fixed", num_snippets=None)


def test_transformer_is_permutation_equivariant_without_positions_only():
    features = torch.randn(2, 16, T, generator=torch.Generator().manual_seed(0))
    order = torch.randperm(T, generator=torch.Generator().manual_seed(1))
    for positional in POSITIONALS:
        torch.manual_seed(0)
        block = TransformerEmbedding(16, heads=4, layers=2, positional=positional, num_snippets=T).eval()
        with torch.no_grad():
            permuted_then_embedded = block(features[..., order])
            embedded_then_permuted = block(features)[..., order]
        equivariant = torch.allclose(permuted_then_embedded, embedded_then_permuted, atol=1e-5)
        assert equivariant == (positional is None), positional


def test_convolutions_know_relative_position_only():
    """On a constant video, a CNN without an encoding gives every snippet away from the borders the same embedding
    (translation equivariance); it cannot tell them apart by place, which a mask head's position channels need."""
    length = 60  # receptive field 37: snippets 18 .. 41 see no border padding
    constant = torch.ones(1, 16, length)
    for positional in POSITIONALS:
        torch.manual_seed(0)
        block = make_embedding("cnn", 16, positional=positional, num_snippets=length).eval()
        with torch.no_grad():
            interior = block(constant)[0, :, 18:42]
        same = torch.allclose(interior, interior[:, :1].expand_as(interior), atol=1e-6)
        assert same == (positional is None), positional


def test_center_features_ignores_a_per_video_offset():
    model = small_model(center_features=True).eval()
    features = torch.randn(2, C, T)
    offset = torch.randn(2, C, 1) * 3
    with torch.no_grad():
        a, b = model(features), model(features + offset)
    assert torch.allclose(a["probs"], b["probs"], atol=1e-5) and torch.allclose(a["masks"], b["masks"], atol=1e-5)


def test_without_mask_branch_has_no_masks():
    outputs = small_model(mask_branch=False)(torch.randn(2, C, T))
    assert "masks" not in outputs and outputs["probs"].shape == (2, K + 1, T)


def test_sinusoidal_positions_match_the_formula():
    table = sinusoidal_positions(5, 6)
    assert table.shape == (5, 6)
    assert math.isclose(float(table[3, 2]), math.sin(3 / 10000 ** (2 / 6)), rel_tol=1e-6)
    assert math.isclose(float(table[3, 3]), math.cos(3 / 10000 ** (2 / 6)), rel_tol=1e-6)


def test_the_three_positional_encodings_of_table_13():
    """Each row of GSMT Table 13 builds by its name: "none" is the model without an encoding (the same parameters
    and outputs as positional=None), "fixed" adds exactly the sinusoidal table to the projected features, "learned"
    adds a trained (T, H) table that the loss reaches."""
    assert set(PAPER_POSITIONAL) == {"none", "learned", "fixed"}
    assert PAPER_POSITIONAL["none"]["average_mAP"] == 36.2 and PAPER_POSITIONAL["fixed"]["average_mAP"] == 28.0
    features = torch.randn(2, C, T, generator=torch.Generator().manual_seed(0))
    models = {name: small_model(positional=name).eval() for name in PAPER_POSITIONAL}
    plain = small_model(positional=None).eval()
    assert models["none"].positional is None and models["none"].embedding.positional.kind is None
    assert models["none"].state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(models["none"](features).values(), plain(features).values()))
        projected = models["fixed"].input_projection(features)
        added = models["fixed"].embedding.positional(projected)
    torch.testing.assert_close(added - projected, sinusoidal_positions(T, 16).t().expand_as(projected))
    assert "embedding.positional.positions" not in models["fixed"].state_dict()  # fixed: not a weight
    learned = models["learned"].train()
    table = learned.embedding.positional.positions
    assert table.shape == (T, 16) and table.requires_grad
    batch = one_video_batch([[2.0, 6.0]], [0], features=features[:1])
    learned.loss(learned(batch["features"]), batch)["total"].backward()
    assert table.grad is not None and float(table.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="positional"):
        small_model(positional="sinusoidal")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="embedding"):
        GSMT(C, K, T, embedding="lstm")
    with pytest.raises(ValueError, match="mask_loss"):
        GSMT(C, K, T, mask_loss="l1")
    with pytest.raises(ValueError, match="positional"):
        GSMT(C, K, T, embedding="cnn", positional="sinusoidal")
    with pytest.raises(ValueError, match="heads"):
        GSMT(C, K, T, hidden=10, heads=4)
    with pytest.raises(ValueError, match="features"):
        small_model()(torch.randn(2, C + 1, T))
    with pytest.raises(ValueError, match="mask_weight"):
        GSMT(C, K, T, mask_weight=0.0)
    with pytest.raises(ValueError, match="mask_border"):
        GSMT(C, K, T, mask_border="reflect")
    with pytest.raises(ValueError, match="dice_form"):
        GSMT(C, K, T, dice_form="twice")
    with pytest.raises(ValueError, match="decoding"):
        small_model().detect(small_model()(torch.randn(1, C, T)), decoding="medium")


def test_cost_counts_parameters_and_flops():
    model = small_model()
    cost = model.cost()
    assert cost["params"] == sum(p.numel() for p in model.parameters())
    # the input projection alone is 2 * C * hidden * T FLOPs; the total must exceed it
    assert cost["flops"] > 2 * C * 16 * T
    assert model.cost(batch_size=2)["flops"] == 2 * cost["flops"]
    paper = paper_size_cost(hidden=64)
    assert paper["paper_params_M"] == 2.9 and paper["paper_flops_G"] == 0.6 and paper["params_M"] > 0


# --------------------------------------------------------------------------------------------------------- loss
def test_loss_terms_with_uninformative_outputs():
    """Zero logits: P uniform, r = 0.5 everywhere; M = 0.5 everywhere. Every term checks against a hand value."""
    model = small_model()
    batch = one_video_batch([[4.0, 10.0]], [1])
    zeros = torch.zeros(1, K + 1, T)
    outputs = {"logits": zeros, "probs": zeros.softmax(1), "regression_logits": zeros,
               "regression": torch.sigmoid(zeros), "mask_logits": torch.zeros(1, T, T),
               "masks": torch.full((1, T, T), 0.5)}
    terms = model.loss(outputs, batch)
    focal = (1 - 1 / (K + 1)) ** 2 * math.log(K + 1)  # (1 - p_y)^2 * -log p_y with p_y = 1/(K+1)
    logistic = (1 + 10.0) * math.log(2)  # -log 0.5 + alpha * mean(-log 0.5) over the hard negatives
    assert math.isclose(float(terms["focal"]), focal, rel_tol=1e-5)
    assert math.isclose(float(terms["logistic"]), logistic, rel_tol=1e-5)
    assert math.isclose(float(terms["classification"]), 0.4 * focal + 0.6 * logistic, rel_tol=1e-5)
    assert float(terms["mask"]) > 0
    assert math.isclose(float(terms["total"]), float(terms["classification"] + terms["mask"]), rel_tol=1e-6)
    assert math.isclose(float(terms["foreground"]), 6 / T)  # snippets 4..9 have centres inside [4, 10)
    weighted = GSMT(C, K, T, hidden=16, mask_weight=10.0).loss(outputs, batch)  # only L_m is scaled
    assert math.isclose(float(weighted["mask"]), float(terms["mask"]), rel_tol=1e-6)
    assert math.isclose(float(weighted["total"]), float(terms["classification"] + 10 * terms["mask"]), rel_tol=1e-6)


def test_mask_loss_is_zero_for_perfect_foreground_columns_whatever_the_background_columns():
    model = small_model()
    batch = one_video_batch([[4.0, 10.0]], [1])
    target = torch.zeros(T)
    target[4:10] = 1
    masks = torch.rand(1, T, T, generator=torch.Generator().manual_seed(0))  # background columns: anything
    masks[0, :, 4:10] = target[:, None]  # every foreground column is the instance's mask
    zeros = torch.zeros(1, K + 1, T)
    outputs = {"logits": zeros, "probs": zeros.softmax(1), "regression_logits": zeros,
               "regression": torch.sigmoid(zeros), "mask_logits": torch.logit(masks.clamp(1e-6, 1 - 1e-6)),
               "masks": masks}
    for kind in ("biou", "iou"):
        model.mask_loss_kind = kind
        assert float(model.loss(outputs, batch)["mask"]) < 1e-4
    masks[0, :, 5] = 1 - target  # one foreground column wrong: the loss sees it
    assert float(model.loss(outputs, batch)["mask"]) > 0.05


def test_mask_l2_penalty_follows_the_mask_loss_and_switches_for_iou_and_biou():
    """None: the published forms (bIoU with lambda * L2, IoU without); True adds bIoU's penalty to IoU too."""
    from tadlab.losses import mask_loss

    batch = one_video_batch([[4.0, 10.0]], [1])
    masks = torch.rand(1, T, T, generator=torch.Generator().manual_seed(1))
    zeros = torch.zeros(1, K + 1, T)
    outputs = {"logits": zeros, "probs": zeros.softmax(1), "regression_logits": zeros,
               "regression": torch.sigmoid(zeros), "mask_logits": torch.logit(masks), "masks": masks}
    target = torch.zeros(T, 6)
    target[4:10] = 1  # the columns of snippets 4..9, each the instance's mask
    columns = masks[0, :, 4:10]
    for kind, penalty in (("biou", None), ("biou", True), ("biou", False), ("iou", None), ("iou", True),
                          ("iou", False), ("bce", None)):
        model = small_model(mask_loss=kind, mask_l2_penalty=penalty)
        expected = mask_loss(columns, target, kind, dim=0, l2_penalty=penalty)
        assert math.isclose(float(model.loss(outputs, batch)["mask"]), float(expected), rel_tol=1e-5), (kind, penalty)
    iou = {p: float(small_model(mask_loss="iou", mask_l2_penalty=p).loss(outputs, batch)["mask"])
           for p in (None, True)}
    assert iou[True] > iou[None]  # the penalty is added
    with pytest.raises(ValueError, match="bce"):
        small_model(mask_loss="bce", mask_l2_penalty=True)


def test_mask_border_and_dice_form_reach_the_mask_loss():
    """An instance [10, 16) that runs to the video's end: the zero border makes snippet 15 a boundary, the geodesic
    one does not, so the two losses differ; each equals tadlab.losses.mask_loss with the same options."""
    from tadlab.losses import mask_loss

    batch = one_video_batch([[10.0, 16.0]], [1])
    masks = torch.rand(1, T, T, generator=torch.Generator().manual_seed(2))
    zeros = torch.zeros(1, K + 1, T)
    outputs = {"logits": zeros, "probs": zeros.softmax(1), "regression_logits": zeros,
               "regression": torch.sigmoid(zeros), "mask_logits": torch.logit(masks), "masks": masks}
    target = torch.zeros(T, 6)
    target[10:16] = 1
    found = {}
    for border in ("geodesic", "zero"):
        for dice_form in ("vnet", "printed"):
            model = small_model(mask_border=border, dice_form=dice_form)
            found[border, dice_form] = float(model.loss(outputs, batch)["mask"])
            expected = mask_loss(masks[0, :, 10:16], target, dim=0, border=border, dice_form=dice_form)
            assert math.isclose(found[border, dice_form], float(expected), rel_tol=1e-5), (border, dice_form)
    assert found["geodesic", "vnet"] != found["zero", "vnet"]
    assert found["geodesic", "printed"] > found["geodesic", "vnet"]  # the printed dice is (1 + V-Net dice) / 2


def test_loss_backpropagates_to_every_parameter():
    model = small_model()
    batch = one_video_batch([[2.0, 6.0], [9.0, 15.0]], [0, 2])
    terms = model.loss(model(batch["features"]), batch)
    terms["total"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_loss_without_mask_branch_is_classification_only():
    model = small_model(mask_branch=False)
    batch = one_video_batch([[2.0, 6.0]], [0])
    terms = model.loss(model(batch["features"]), batch)
    assert float(terms["mask"]) == 0 and torch.equal(terms["total"], terms["classification"])


def test_sgd_steps_lower_the_loss():
    """GSMT trains with SGD (Sec. 4): ten steps of SGD with momentum 0.9 on one small batch lower the loss at every
    step (the same dropout draws each step). A larger step makes the loss jump wherever a column's band stops
    meeting its target's and lambda = 1/(overlap + eps) reaches e^8; the paper's lr is 1e-4."""
    from tadlab.data.collate import collate_videos
    from tadlab.data.synthetic import make_world

    world = make_world("anet", num_videos=20, seed=0, num_snippets=T, feature_dim=C, num_classes=K)
    batch = collate_videos(list(world.dataset("training"))[:8])
    losses = []
    train_steps(small_model(), batch, steps=10, lr=1e-3, optimizer=functools.partial(torch.optim.SGD, momentum=0.9),
                seed=0, losses=losses)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.95 * losses[0]


def test_fit_with_sgd_lowers_the_training_loss():
    """tadlab.train.fit(optimizer="sgd", momentum=0.9) trains GSMT: the loss of the training videos (eval mode, no
    dropout) after four epochs is below the loss before."""
    from tadlab.data.collate import collate_videos
    from tadlab.data.synthetic import make_world
    from tadlab.train import fit

    world = make_world("anet", num_videos=20, seed=0, num_snippets=T, feature_dim=C, num_classes=K)
    batch = collate_videos(list(world.dataset("training")))
    model = small_model()

    def training_loss():
        model.eval()
        with torch.no_grad():
            return float(model.loss(model(batch["features"]), batch)["total"])

    before = training_loss()
    fit(model, world.dataset("training"), epochs=4, batch_size=4, lr=1e-3, optimizer="sgd", momentum=0.9,
        weight_decay=1e-3, schedule="constant", device="cpu", progress=False, seed=0)
    assert training_loss() < 0.9 * before


# ----------------------------------------------------------------------------------------------------- decoding
def hand_made(num_snippets=10, snippet=3, klass=0):
    """One video, K = 2, one confident action snippet; its mask column has two bumps."""
    probs = torch.zeros(1, 3, num_snippets)
    probs[0, 2] = 1.0  # background everywhere ...
    probs[0, :, snippet] = torch.tensor([0.0, 0.0, 0.0])
    probs[0, klass, snippet], probs[0, 2, snippet] = 0.8, 0.2  # ... but at `snippet`
    column = torch.tensor([0.0, 0.95, 0.95, 0.5, 0.05, 0.8, 0.8, 0.05, 0.0, 0.0])
    masks = torch.zeros(1, num_snippets, num_snippets)
    masks[0, :, snippet] = column
    return probs, masks


KEEP_ALL = {"method": "hard", "iou_threshold": 1.0}  # hard NMS that drops nothing: the candidates themselves


def as_set(detection):
    return {(tuple(s.tolist()), round(float(c), 4), int(l))
            for s, c, l in zip(detection["segments"], detection["scores"], detection["labels"])}


def test_long_decoding_takes_first_and_last_activation():
    probs, masks = hand_made()
    [det] = decode_global_masks(probs, masks, decoding="long", top_snippets=1, thresholds=(0.3, 0.9),
                                score_threshold=0.0, nms=KEEP_ALL)
    assert as_set(det) == {((1.0, 7.0), round(0.8 * 0.95, 4), 0), ((1.0, 3.0), round(0.8 * 0.95, 4), 0)}


def test_short_decoding_takes_every_run():
    probs, masks = hand_made()
    [det] = decode_global_masks(probs, masks, decoding="short", top_snippets=1, thresholds=(0.3, 0.9),
                                score_threshold=0.0, nms=KEEP_ALL)
    assert as_set(det) == {((1.0, 4.0), round(0.8 * 0.95, 4), 0), ((5.0, 7.0), round(0.8 * 0.8, 4), 0),
                           ((1.0, 3.0), round(0.8 * 0.95, 4), 0)}
    assert torch.all(det["scores"][:-1] >= det["scores"][1:])  # best first


def test_contrast_score_subtracts_the_mean_outside():
    probs, masks = hand_made()
    [det] = decode_global_masks(probs, masks, decoding="short", top_snippets=1, thresholds=(0.3,),
                                score_threshold=0.0, mask_score="contrast", nms=KEEP_ALL)
    outside_of_5_7 = (0 + 0.95 + 0.95 + 0.5 + 0.05 + 0.05 + 0 + 0) / 8
    scores = {tuple(s.tolist()): float(c) for s, c in zip(det["segments"], det["scores"])}
    assert math.isclose(scores[(5.0, 7.0)], 0.8 * (0.8 - outside_of_5_7), rel_tol=1e-5)


def test_score_threshold_and_top_k_and_duplicates():
    probs, masks = hand_made()
    [det] = decode_global_masks(probs, masks, decoding="long", top_snippets=1, score_threshold=0.0, nms=KEEP_ALL)
    # 9 thresholds, but 0.1..0.5 all give [1, 7) and 0.6..0.9 give [1, 3): duplicates merge to two candidates
    assert len(det["segments"]) == 2
    [det] = decode_global_masks(probs, masks, decoding="short", top_snippets=1, thresholds=(0.3, 0.9),
                                score_threshold=0.7, nms=KEEP_ALL)
    assert {tuple(s.tolist()) for s in det["segments"]} == {(1.0, 4.0), (1.0, 3.0)}  # 0.64 <= theta_c is gone
    [det] = decode_global_masks(probs, masks, decoding="short", top_snippets=1, thresholds=(0.3, 0.9),
                                score_threshold=0.0, top_k=1, nms=KEEP_ALL)
    assert len(det["segments"]) == 1


def test_top_m1_takes_snippets_each_with_its_best_class():
    """Sec. 3.3 selects the top M1 *snippets* of P. T = 4, K = 2 (background 2): snippet 0 scores 0.5 for class 0
    and 0.45 for class 1, snippet 1 0.4 for class 0 (its best action class); snippets 2, 3 are background. Column 0
    says [0, 2), column 1 says [2, 4). With M1 = 2, "snippets" decodes columns 0 and 1, both as class 0; "pairs"
    decodes column 0 twice (classes 0 and 1) and never column 1."""
    probs = torch.tensor([[[0.5, 0.4, 0.0, 0.0], [0.45, 0.1, 0.0, 0.0], [0.05, 0.5, 1.0, 1.0]]])
    masks = torch.zeros(1, 4, 4)
    masks[0, :2, 0] = 1.0
    masks[0, 2:, 1] = 1.0
    options = dict(decoding="long", top_snippets=2, thresholds=(0.5,), score_threshold=0.0, nms=KEEP_ALL)
    [snippets] = decode_global_masks(probs, masks, **options)  # the default
    assert as_set(snippets) == {((0.0, 2.0), 0.5, 0), ((2.0, 4.0), 0.4, 0)}
    [pairs] = decode_global_masks(probs, masks, top_selection="pairs", **options)
    assert as_set(pairs) == {((0.0, 2.0), 0.5, 0), ((0.0, 2.0), 0.45, 1)}
    with pytest.raises(ValueError, match="top_selection"):
        decode_global_masks(probs, masks, top_selection="classes", **options)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_top_m1_snippets_are_distinct_and_the_best_by_their_best_class(top_snippets, seed):
    generator = torch.Generator().manual_seed(seed)
    probs = (4 * torch.randn(2, K + 1, T, generator=generator)).softmax(1)
    masks = torch.ones(2, T, T)  # every column active: one "long" candidate per decoded column
    thresholds = torch.tensor([0.5])
    best, best_class = probs[:, :K].max(1)
    video, label, start, end, snippet, score = mask_candidates(probs, masks, "long", top_snippets, thresholds)
    for b in range(2):
        chosen = snippet[video == b]
        assert len(set(chosen.tolist())) == len(chosen) == min(top_snippets, T)  # distinct snippets, M1 of them
        assert torch.equal(chosen.sort().values, best[b].topk(min(top_snippets, T)).indices.sort().values)
        assert torch.equal(label[video == b], best_class[b, chosen])
        assert torch.equal(score[video == b], best[b, chosen])
    video, label, _, _, snippet, score = mask_candidates(probs, masks, "long", top_snippets, thresholds, "pairs")
    for b in range(2):  # pairs: the M1 best entries of the action rows, a snippet possibly more than once
        expected = probs[b, :K].flatten().topk(min(top_snippets, K * T)).values
        torch.testing.assert_close(score[video == b].sort().values, expected.sort().values)
        torch.testing.assert_close(probs[b, label[video == b], snippet[video == b]], score[video == b])


@pytest.mark.parametrize("source, mask_score", [("masks", "inner"), ("masks", "contrast"), ("class_map", "inner"),
                                               ("both", "inner"), ("both", "mean")])
def test_batched_decoding_equals_one_video_at_a_time(source, mask_score):
    generator = torch.Generator().manual_seed(1)
    probs = (3 * torch.rand(3, K + 1, T, generator=generator)).softmax(1)
    probs[1] = torch.eye(K + 1)[K][:, None]  # a video that is background everywhere: no class-map candidate
    masks = torch.rand(3, T, T, generator=generator)
    options = dict(source=source, mask_score=mask_score, decoding="short", top_snippets=5, score_threshold=0.05)
    batched = decode_global_masks(probs, masks, **options)
    assert source == "masks" or len(batched[1]["segments"]) == 0
    for b in range(3):
        [single] = decode_global_masks(probs[b:b + 1], masks[b:b + 1], **options)
        for key in ("segments", "scores", "labels"):
            assert torch.equal(batched[b][key], single[key])


def two_instances():
    """One video, T = 8, K = 2 (background 2). Class 0's curve has runs [1, 3) and [6, 8) above 0.5; the masks of
    snippets 1, 2 say [1, 3), those of snippets 6, 7 say [5, 8); every other column is empty."""
    probs = torch.zeros(1, 3, 8)
    probs[0, 0] = torch.tensor([0.0, 0.8, 0.6, 0.0, 0.0, 0.0, 0.9, 0.7])
    probs[0, 2] = 1 - probs[0, 0]
    masks = torch.zeros(1, 8, 8)
    masks[0, :, 1] = torch.tensor([0.0, 0.9, 0.8, 0.1, 0.0, 0.0, 0.0, 0.0])
    masks[0, :, 2] = torch.tensor([0.0, 0.7, 0.9, 0.2, 0.0, 0.0, 0.0, 0.0])
    masks[0, :, 6] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 1.0, 0.8])
    masks[0, :, 7] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.9, 0.7])
    return probs, masks


def decode_two_instances(source, mask_score="inner"):
    probs, masks = two_instances()
    [det] = decode_global_masks(probs, masks, source=source, decoding="short", top_snippets=2, thresholds=(0.5,),
                                score_threshold=0.0, mask_score=mask_score, nms=KEEP_ALL)
    return as_set(det)


def test_each_source_gives_the_hand_worked_segments_and_scores():
    # masks: the top pairs are (class 0, snippet 6) at 0.9 and (0, 1) at 0.8; column 6 >= 0.5 on [5, 8), max 1.0;
    # column 1 on [1, 3), max 0.9. Score = P[c, t] x max of column t over the segment.
    assert decode_two_instances("masks") == {((5.0, 8.0), 0.9, 0), ((1.0, 3.0), round(0.8 * 0.9, 4), 0)}
    # class_map: the runs of P[0] >= 0.5, scored as class-map grouping does (mean of P[0] over them minus the mean
    # over one-snippet flanks, here 0 on both sides); the masks are not read.
    assert decode_two_instances("class_map") == {((1.0, 3.0), 0.7, 0), ((6.0, 8.0), 0.8, 0)}
    # both: a class-map run's voters are its own snippets: mean of P over them x mean of their columns' maxima over
    # the run. [1, 3): 0.7 x (0.9 + 0.9) / 2 = 0.63, below the mask candidate's 0.72 for the same segment (merged,
    # best kept); [6, 8): 0.8 x (1.0 + 0.9) / 2 = 0.76; the mask candidate [5, 8) stays.
    assert decode_two_instances("both") == {((5.0, 8.0), 0.9, 0), ((1.0, 3.0), 0.72, 0), ((6.0, 8.0), 0.76, 0)}


def test_mean_and_contrast_mask_scores_by_hand():
    # mean: column 6 over [5, 8) = (0.6 + 1 + 0.8) / 3 = 0.8; column 1 over [1, 3) = 0.85; the runs' voters:
    # [1, 3): (0.85 + 0.8) / 2 = 0.825 -> 0.7 x 0.825; [6, 8): (0.9 + 0.8) / 2 = 0.85 -> 0.8 x 0.85.
    assert decode_two_instances("both", "mean") == {((5.0, 8.0), 0.72, 0), ((1.0, 3.0), 0.68, 0),
                                                    ((6.0, 8.0), 0.68, 0)}
    # contrast: max inside minus the mean outside. Column 1 on [1, 3): 0.9 - 0.1 / 6; column 2: 0.9 - 0.2 / 6.
    found = {segment: score for segment, score, _ in decode_two_instances("both", "contrast")}
    assert math.isclose(found[(1.0, 3.0)], round(0.8 * (0.9 - 0.1 / 6), 4), abs_tol=1e-4)  # the mask candidate
    assert math.isclose(found[(6.0, 8.0)], round(0.8 * ((1.0 - 0.6 / 6) + (0.9 - 0.4 / 6)) / 2, 4), abs_tol=1e-4)


def test_mean_mask_score_ranks_a_merged_run_below_the_instances_it_merges():
    """Two same-class instances [0, 2) and [3, 5) with a gap the class map cannot resolve: grouping finds one run
    [0, 5); the voters' columns each cover their own instance, so under "mean" the run scores low."""
    probs = torch.zeros(1, 2, 5)
    probs[0, 0] = torch.tensor([0.9, 0.9, 0.6, 0.9, 0.9])
    probs[0, 1] = 1 - probs[0, 0]
    masks = torch.zeros(1, 5, 5)
    masks[0, :2, :2] = 1.0
    masks[0, 3:, 3:] = 1.0
    [det] = decode_global_masks(probs, masks, source="both", decoding="short", top_snippets=5, thresholds=(0.5,),
                                score_threshold=0.0, mask_score="mean", nms=KEEP_ALL)
    found = {segment: score for segment, score, _ in as_set(det)}
    # run [0, 5): mean P = 0.84; voters 0, 1, 3, 4 have column mean 2/5 over it, voter 2 (empty column) 0.
    assert math.isclose(found[(0.0, 5.0)], round(0.84 * (4 * 0.4) / 5, 4), abs_tol=1e-4)
    assert found[(0.0, 2.0)] == found[(3.0, 5.0)] == 0.9  # the mask candidates: P 0.9 x column mean 1
    [det] = decode_global_masks(probs, masks, source="both", decoding="short", top_snippets=5, thresholds=(0.5,),
                                score_threshold=0.0, mask_score="inner", nms=KEEP_ALL)
    found = {segment: score for segment, score, _ in as_set(det)}
    assert math.isclose(found[(0.0, 5.0)], round(0.84 * 0.8, 4), abs_tol=1e-4)  # "inner" barely penalises it


def test_column_scores_match_brute_force():
    generator = torch.Generator().manual_seed(3)
    masks = torch.rand(2, 11, 11, generator=generator)
    start = torch.randint(0, 10, (30,), generator=generator)
    end = start + 1 + (torch.rand(30, generator=generator) * (11 - start)).long().clamp(max=10 - start)
    video = torch.randint(0, 2, (30,), generator=generator)
    column = torch.randint(0, 11, (30,), generator=generator)
    for mask_score in ("inner", "contrast", "mean"):
        every = column_scores(masks, video, start, end, mask_score)
        one = column_scores(masks, video, start, end, mask_score, column=column)
        for r in range(30):
            inside = masks[video[r], start[r]:end[r]]  # (length, T): rows of the segment, every column
            outside = torch.cat([masks[video[r], :start[r]], masks[video[r], end[r]:]])
            expected = {"inner": inside.amax(0), "mean": inside.mean(0),
                        "contrast": (inside.amax(0) - (outside.mean(0) if len(outside) else 0)).clamp_min(0)}
            torch.testing.assert_close(every[r], expected[mask_score], atol=1e-6, rtol=0)
            torch.testing.assert_close(one[r], expected[mask_score][column[r]], atol=1e-6, rtol=0)


def test_class_map_source_is_class_map_grouping():
    from tadlab.grouping import class_map_candidates

    generator = torch.Generator().manual_seed(4)
    probs = (torch.rand(2, K + 1, T, generator=generator) * 3).softmax(1)
    detections = decode_global_masks(probs, None, score_threshold=0.0, top_k=10_000, nms=KEEP_ALL)  # source None
    video, label, start, end, score = class_map_candidates(probs)
    for b, det in enumerate(detections):
        own = video == b
        expected = {(float(s), float(e), round(float(c), 4), int(l))
                    for s, e, c, l in zip(start[own], end[own], score[own], label[own])}
        assert {(s[0], s[1], c, l) for s, c, l in as_set(det)} == expected


def test_sources_and_the_mask_branch():
    probs, masks = two_instances()
    with pytest.raises(ValueError, match="source"):
        decode_global_masks(probs, masks, source="proposals")
    for source in ("masks", "both"):
        with pytest.raises(ValueError, match="needs masks"):
            decode_global_masks(probs, None, source=source)
    model = small_model(mask_branch=False).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, C, T))
    assert len(model.detect(outputs)) == len(model.detect(outputs, source="class_map")) == 2
    for source in ("masks", "both"):
        with pytest.raises(ValueError, match="mask_branch=False"):
            model.detect(outputs, source=source)


def test_soft_nms_sigma_of_the_paper_datasets():
    assert PAPER_SOFT_NMS == PAPER_SOFT_NMS_SIGMA == {"thumos": 0.4, "anet": 0.6}  # GSMT Sec. 4
    assert soft_nms_options("anet") == {"method": "gaussian", "sigma": 0.6}
    assert soft_nms_options() == soft_nms_options(reading="linear") == {"method": "gaussian", "sigma": 0.5}
    with pytest.raises(ValueError, match="preset"):
        soft_nms_options("coco")
    with pytest.raises(ValueError, match="reading"):
        soft_nms_options("anet", reading="threshold")
    generator = torch.Generator().manual_seed(2)
    probs = torch.rand(1, K + 1, T, generator=generator).softmax(1)
    masks = torch.rand(1, T, T, generator=generator)
    by_name = decode_global_masks(probs, masks, score_threshold=0.0, nms="thumos")[0]
    by_dict = decode_global_masks(probs, masks, score_threshold=0.0, nms={"method": "gaussian", "sigma": 0.4})[0]
    default = decode_global_masks(probs, masks, score_threshold=0.0)[0]
    assert torch.equal(by_name["scores"], by_dict["scores"]) and not torch.equal(by_name["scores"], default["scores"])


def test_the_two_readings_of_the_soft_nms_threshold_by_hand():
    """GSMT Sec. 4's 0.6 for ActivityNet: as sigma, a candidate overlapping a better one at tIoU 0.5 keeps
    exp(-0.25 / 0.6) of its score and one at 0.75 exp(-0.5625 / 0.6); as the linear decay's threshold N_t = 0.6,
    the first keeps its score (0.5 < N_t) and the second keeps 1 - 0.75 of it."""
    from tadlab.segments import batched_soft_nms

    def decayed(other, reading):  # the score of ``other`` (0.8) after Soft-NMS with [0, 4) (0.9)
        segments = torch.tensor([[0.0, 4.0], other], dtype=torch.float64)
        _, scores, _, _ = batched_soft_nms(segments, torch.tensor([0.9, 0.8], dtype=torch.float64),
                                           torch.zeros(2, dtype=torch.int64), **soft_nms_options("anet", reading))
        return float(scores[1])

    assert math.isclose(decayed([0.0, 2.0], "sigma"), 0.8 * math.exp(-0.5 ** 2 / 0.6), rel_tol=1e-9)  # tIoU 0.5
    assert math.isclose(decayed([0.0, 3.0], "sigma"), 0.8 * math.exp(-0.75 ** 2 / 0.6), rel_tol=1e-9)  # tIoU 0.75
    assert decayed([0.0, 2.0], "linear") == 0.8
    assert math.isclose(decayed([0.0, 3.0], "linear"), 0.8 * (1 - 0.75), rel_tol=1e-9)


# ------------------------------------------------------------------------------------------------------ oracles
def test_oracle_outputs_put_the_ground_truth_in_place_of_p_or_m():
    model = small_model().eval()
    batch = one_video_batch([[2.0, 6.0], [9.0, 15.0]], [0, 2])
    with torch.no_grad():
        outputs = model(batch["features"])
    before = {key: value.clone() for key, value in outputs.items()}
    classes = model.oracle_outputs(outputs, batch, classes=True)
    expected = torch.full((T,), K)
    expected[2:6], expected[9:15] = 0, 2
    assert torch.equal(classes["probs"][0], torch.nn.functional.one_hot(expected, K + 1).t().float())
    assert torch.allclose(classes["logits"].softmax(1), classes["probs"])
    assert torch.equal(classes["masks"], outputs["masks"])  # M stays predicted
    masks = model.oracle_outputs(outputs, batch, masks=True)
    assert torch.equal(masks["masks"], global_masks(batch["segments"], T, labels=batch["labels"])[0])
    assert torch.equal(masks["probs"], outputs["probs"])  # P stays predicted
    assert torch.allclose(torch.sigmoid(masks["mask_logits"]), masks["masks"], atol=1e-6)
    assert all(torch.equal(outputs[key], before[key]) for key in before)  # a new dict; outputs untouched
    # Both replaced: every instance is found exactly, with score 1 (P = 1 x mask maximum 1), and only those.
    both = model.oracle_outputs(outputs, batch, classes=True, masks=True)
    [det] = model.detect(both, top_snippets=T, nms=KEEP_ALL)
    assert as_set(det) == {((2.0, 6.0), 1.0, 0), ((9.0, 15.0), 1.0, 2)}
    # Only the instance snippets' columns true: the background columns keep their predicted masks.
    instances = model.oracle_outputs(outputs, batch, masks=True, keep_background_masks=True)
    inside = torch.zeros(T, dtype=torch.bool)
    inside[2:6], inside[9:15] = True, True
    assert torch.equal(instances["masks"][0][:, inside], masks["masks"][0][:, inside])
    assert torch.equal(instances["masks"][0][:, ~inside], outputs["masks"][0][:, ~inside])
    assert torch.equal(instances["mask_logits"][0][:, ~inside], outputs["mask_logits"][0][:, ~inside])
    assert torch.equal(instances["mask_logits"][0][:, inside], masks["mask_logits"][0][:, inside])
    with pytest.raises(ValueError, match="option of masks=True"):
        model.oracle_outputs(outputs, batch, classes=True, keep_background_masks=True)
    with pytest.raises(ValueError, match="classes=True and/or masks=True"):
        model.oracle_outputs(outputs, batch)
    with pytest.raises(ValueError, match="mask_branch=False"):
        small_model(mask_branch=False).oracle_outputs(outputs, batch, masks=True)


@settings(max_examples=40)
@given(st.lists(st.lists(st.booleans(), min_size=1, max_size=12), min_size=1, max_size=5))
def test_decoded_runs_rebuild_the_activations(rows):
    width = max(len(r) for r in rows)
    active = torch.tensor([r + [False] * (width - len(r)) for r in rows]).reshape(1, len(rows), 1, width)
    b, i, start, end = _decode_activations(active, "short")
    rebuilt = torch.zeros_like(active)
    for bb, ii, s, e in zip(b, i, start, end):
        assert s < e and not bool(rebuilt[bb, ii, 0, s:e].any())  # runs are non-empty and disjoint
        rebuilt[bb, ii, 0, s:e] = True
    assert torch.equal(rebuilt, active)
    b, i, start, end = _decode_activations(active, "long")
    assert len(b) == int(active.any(-1).sum())
    for ii, s, e in zip(i, start, end):
        on = active[0, ii, 0].nonzero().squeeze(1)
        assert int(s) == int(on[0]) and int(e) == int(on[-1]) + 1


def test_detect_on_model_outputs():
    model = small_model().eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, C, T))
    detections = model.detect(outputs, top_snippets=10, score_threshold=0.0)
    assert len(detections) == 2
    for det in detections:
        assert det["segments"].shape[1] == 2 and det["labels"].dtype == torch.int64
        assert bool((det["segments"][:, 0] < det["segments"][:, 1]).all())
        assert bool(((det["labels"] >= 0) & (det["labels"] < K)).all())


# ---------------------------------------------------------------------------------- save/load, determinism, CUDA
def test_save_load_round_trip(tmp_path):
    model = small_model().eval()
    path = tmp_path / "gsmt.pt"
    torch.save(model.state_dict(), path)
    restored = GSMT(C, K, T, hidden=16, heads=4, layers=1).eval()
    restored.load_state_dict(torch.load(path, weights_only=True))
    features = torch.randn(2, C, T)
    with torch.no_grad():
        a, b = model(features), restored(features)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_checkpoint_round_trip_through_the_training_loop(tmp_path):
    from tadlab.data.synthetic import make_world
    from tadlab.train import fit, load_checkpoint

    world = make_world("anet", num_videos=6, seed=0, num_snippets=T, feature_dim=C, num_classes=K)
    model = small_model()
    fit(model, world.dataset("training"), epochs=1, batch_size=4, checkpoint_dir=tmp_path, device="cpu",
        progress=False)
    torch.manual_seed(123)  # a different initialisation, overwritten by the checkpoint
    restored = GSMT(C, K, T, hidden=16, heads=4, layers=1)
    load_checkpoint(restored, tmp_path / "last.pt")
    features = torch.stack([item["features"] for item in world.dataset("validation")])
    model.eval(), restored.eval()
    with torch.no_grad():
        a, b = model(features), restored(features)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_same_seed_same_training_step():
    assert_reproducible_step(small_model, lambda: one_video_batch([[2.0, 6.0]], [0]))


@pytest.mark.cuda
@needs_cuda
def test_trains_and_detects_on_cuda():
    device = torch.device("cuda")
    model = small_model().to(device)
    batch = one_video_batch([[2.0, 6.0], [9.0, 15.0]], [0, 2])
    batch = to_device(batch, device)
    terms = train_steps(model, batch, lr=1e-2)
    assert all(v.device.type == "cuda" for v in terms.values())
    model.eval()
    with torch.no_grad():
        outputs = model(batch["features"])
    detections = model.detect(outputs, score_threshold=0.0)
    assert detections[0]["segments"].device.type == "cuda"
    for source in ("masks", "class_map", "both"):
        on_gpu = model.detect(outputs, source=source, score_threshold=0.0, mask_score="mean")
        on_cpu = decode_global_masks(outputs["probs"].cpu(), outputs["masks"].cpu(), source=source,
                                     score_threshold=0.0, mask_score="mean")
        assert torch.allclose(on_cpu[0]["scores"], on_gpu[0]["scores"].cpu(), atol=1e-5)
    oracle = model.oracle_outputs(outputs, batch, classes=True, masks=True)
    assert oracle["probs"].device.type == oracle["masks"].device.type == "cuda"
    assert {tuple(s) for s in model.detect(oracle, top_snippets=16)[0]["segments"].tolist()} >= {(2.0, 6.0),
                                                                                                 (9.0, 15.0)}
    embedding = make_embedding("mstcn", 16, positional="learned", num_snippets=T).to(device)
    assert embedding(torch.randn(2, 16, T, device=device)).device.type == "cuda"
