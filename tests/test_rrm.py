"""RRM: ConvGRU gates (Eq. 1), the sequence-loss weights, a zero update leaves the map unchanged, train and test
iterations, zero iterations = plain BMN, the same features read at every iteration (no lookup at the estimate), bad
arguments."""
import math

import pytest
import torch

from tadlab.models import BMN, RRM
from tadlab.models.rrm import ConvGRU, UpdateBlock, sequence_weights

C, T, D, F = 8, 12, 10, 6
TINY_BMN = dict(hidden_1d=8, hidden_bm=4, hidden_3d=8, hidden_2d=F, num_samples=4, samples_per_bin=2, groups=2)
TINY_RRM = dict(hidden_dim=4, context_dim=3, encoder_dim=3, motion_dim=5, head_dim=4)


def refined_model(iterations=3, test_iterations=None) -> BMN:
    torch.manual_seed(0)
    return BMN(C, T, D, **TINY_BMN, refine=RRM(F, iterations, test_iterations, **TINY_RRM))


def randomize_head(rrm: RRM) -> None:
    torch.nn.init.normal_(rrm.update.head[-1].weight, std=0.5)


def test_gru_gates_shapes_and_ranges():
    gru = ConvGRU(hidden_dim=5, input_dim=7)
    hidden = torch.tanh(torch.randn(2, 5, D, T))
    inputs = torch.randn(2, 7, D, T) * 3
    with torch.no_grad():
        gates = gru.gates(hidden, inputs)
    for name in ("update", "reset", "candidate", "hidden"):
        assert gates[name].shape == (2, 5, D, T)
    assert 0 < float(gates["update"].min()) and float(gates["update"].max()) < 1
    assert 0 < float(gates["reset"].min()) and float(gates["reset"].max()) < 1
    assert -1 < float(gates["candidate"].min()) and float(gates["candidate"].max()) < 1
    z = gates["update"]
    assert torch.allclose(gates["hidden"], (1 - z) * hidden + z * gates["candidate"])
    with torch.no_grad():
        assert torch.equal(gru(hidden, inputs), gates["hidden"])
    assert gru.conv_update.kernel_size == gru.conv_reset.kernel_size == gru.conv_candidate.kernel_size == (3, 3)


def test_gru_reset_gate_acts_on_the_hidden_state_only():
    gru = ConvGRU(hidden_dim=2, input_dim=1)
    torch.nn.init.constant_(gru.conv_reset.bias, -100.0)  # r = 0: the candidate ignores h
    torch.nn.init.zeros_(gru.conv_reset.weight)
    inputs = torch.randn(1, 1, 4, 4)
    a = gru.gates(torch.randn(1, 2, 4, 4), inputs)["candidate"]
    b = gru.gates(torch.randn(1, 2, 4, 4), inputs)["candidate"]
    assert torch.allclose(a, b, atol=1e-6)


def test_hidden_state_stays_in_the_tanh_range_over_many_steps():
    gru = ConvGRU(4, 3)
    hidden = torch.tanh(torch.randn(1, 4, 6, 6))
    for _ in range(20):
        hidden = gru(hidden, torch.randn(1, 3, 6, 6) * 5)
    assert float(hidden.detach().abs().max()) < 1


def test_sequence_loss_weights():
    assert sequence_weights(0) == []
    assert sequence_weights(1) == [1.0]
    assert all(math.isclose(a, b) for a, b in zip(sequence_weights(3), [0.64, 0.8, 1.0]))
    assert all(math.isclose(a, b) for a, b in zip(sequence_weights(4, gamma=0.5), [0.125, 0.25, 0.5, 1.0]))


@torch.no_grad()
def test_sequence_loss_weighs_every_iteration():
    model = refined_model(iterations=3)
    batch = {"segments": torch.tensor([[[2.0, 6.0]]]), "labels": torch.tensor([[0]])}
    outputs = model(torch.randn(1, C, T))
    # The untrained head is zero: every refined map equals BMN's, so each iteration's loss is the PEM's loss.
    terms = model.loss(outputs, batch)
    per_map = 10 * terms["regression"] + terms["classification"]
    assert math.isclose(float(terms["refinement"]), (0.64 + 0.8 + 1.0) * float(per_map), rel_tol=1e-5)
    randomize_head(model.refine)
    outputs = model(torch.randn(1, C, T))
    torch.manual_seed(1)
    terms = model.loss(outputs, batch)
    from tadlab.models.bmn import map_losses, regression_sample

    torch.manual_seed(1)
    iou = model.targets(batch)["iou"]
    sample = regression_sample(iou, model.valid)  # the same draw as inside loss()
    expected = sum(w * (10 * r + c) for w, (r, c) in
                   zip(sequence_weights(3), (map_losses(m, iou, model.valid, sample)
                                             for m in outputs["refined_map_logits"])))
    assert math.isclose(float(terms["refinement"]), float(expected), rel_tol=1e-5)
    assert math.isclose(float(terms["total"]), float(terms["tem"] + 10 * terms["regression"]
                                                     + terms["classification"] + terms["refinement"]), rel_tol=1e-5)


@torch.no_grad()
def test_zero_update_block_leaves_the_map_unchanged():
    model = refined_model(iterations=4)
    for name, parameter in model.refine.named_parameters():  # everything random but the head's last conv
        if not name.startswith("update.head.2"):
            torch.nn.init.normal_(parameter, std=0.3)
    features = torch.randn(2, C, T)
    outputs = model(features)
    assert len(outputs["refined_map_logits"]) == 4
    for step in outputs["refined_map_logits"]:
        assert torch.equal(step, outputs["initial_map_logits"])
    randomize_head(model.refine)
    changed = model(features)["refined_map_logits"]
    assert not torch.allclose(changed[0], outputs["initial_map_logits"])
    assert not torch.allclose(changed[1], changed[0])  # each iteration moves it further


def test_update_block_output_shapes():
    block = UpdateBlock(F, **TINY_RRM)
    hidden, residual = block(torch.zeros(2, 4, D, T), torch.zeros(2, 3, D, T), torch.randn(2, F, D, T),
                             torch.randn(2, 2, D, T))
    assert hidden.shape == (2, 4, D, T) and residual.shape == (2, 2, D, T)


def test_train_and_test_iterations_are_separate_and_may_exceed_training():
    model = refined_model(iterations=2, test_iterations=5)
    randomize_head(model.refine)
    features = torch.randn(1, C, T)
    assert len(model.train()(features)["refined_map_logits"]) == 2
    model.eval()
    with torch.no_grad():
        outputs = model(features)
        assert len(outputs["refined_map_logits"]) == 5
        assert torch.equal(outputs["map_logits"], outputs["refined_map_logits"][-1])
        longer = model(features, iterations=12)["refined_map_logits"]
    assert len(longer) == 12 and torch.isfinite(longer[-1]).all()
    assert torch.allclose(longer[4], outputs["refined_map_logits"][4])  # the first 5 steps are the same steps
    assert len(model.detect(outputs)) == 1


def test_zero_iterations_is_plain_bmn():
    refined = refined_model(iterations=0).eval()
    randomize_head(refined.refine)
    plain = BMN(C, T, D, **TINY_BMN).eval()
    plain.load_state_dict({k: v for k, v in refined.state_dict().items() if not k.startswith("refine.")})
    features = torch.randn(2, C, T)
    with torch.no_grad():
        a, b = refined(features), plain(features)
    assert a["refined_map_logits"] == []
    assert torch.equal(a["map_logits"], b["map_logits"]) and torch.equal(a["start"], b["start"])
    batch = {"segments": torch.tensor([[[2.0, 6.0]], [[1.0, 9.0]]]), "labels": torch.tensor([[0], [1]])}
    torch.manual_seed(3)
    loss_a = refined.loss(a, batch)
    torch.manual_seed(3)
    loss_b = plain.loss(b, batch)
    assert torch.equal(loss_a["total"], loss_b["total"])


def test_map_is_detached_between_iterations_but_the_hidden_state_is_not():
    model = refined_model(iterations=2)
    randomize_head(model.refine)
    outputs = model(torch.randn(1, C, T))
    last = outputs["refined_map_logits"][-1]
    (grad,) = torch.autograd.grad(last.sum(), outputs["initial_map_logits"], allow_unused=True)
    assert grad is None  # no path from the last map back to BMN's map
    grads = torch.autograd.grad(last.sum(), list(model.refine.context.parameters()))
    assert all(float(g.abs().sum()) > 0 for g in grads)  # the context reaches it through the hidden state


def test_every_iteration_reads_the_same_features_only_the_map_and_hidden_state_change():
    # The RRM has no lookup at the current estimate (unlike RAFT's correlation lookup): the encoded proposal features
    # and the context are the same at every iteration, while the map and the hidden state it reads change.
    model = refined_model(iterations=4).eval()
    randomize_head(model.refine)
    seen = {"features": [], "map": [], "hidden": []}
    encoder, gru = model.refine.update.encoder, model.refine.update.gru
    hooks = [encoder.features.register_forward_hook(lambda m, i, o: seen["features"].append(o.detach())),
             encoder.map.register_forward_hook(lambda m, i, o: seen["map"].append(i[0].detach())),
             gru.register_forward_hook(lambda m, i, o: seen["hidden"].append(i[0].detach()))]
    with torch.no_grad():
        model(torch.randn(2, C, T))
    for hook in hooks:
        hook.remove()
    assert len(seen["features"]) == len(seen["map"]) == 4
    assert all(torch.equal(f, seen["features"][0]) for f in seen["features"][1:])
    assert not any(torch.equal(m, seen["map"][0]) for m in seen["map"][1:])
    assert not any(torch.equal(h, seen["hidden"][0]) for h in seen["hidden"][1:])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="iterations"):
        RRM(F, iterations=-1)
    with pytest.raises(TypeError, match="test_iterations"):
        RRM(F, iterations=2, test_iterations=1.5)
    with pytest.raises(ValueError, match="gamma"):
        RRM(F, gamma=1.5)
    with pytest.raises(ValueError, match="hidden_dim"):
        RRM(F, hidden_dim=0)
    with pytest.raises(ValueError, match="motion_dim"):
        RRM(F, motion_dim=2)
    rrm = RRM(F, **TINY_RRM)
    with pytest.raises(ValueError, match="features"):
        rrm(torch.randn(1, F + 1, D, T), torch.randn(1, 2, D, T))
    with pytest.raises(ValueError, match="map_logits"):
        rrm(torch.randn(1, F, D, T), torch.randn(1, 2, D, T - 1))
    with pytest.raises(ValueError, match="iterations"):
        rrm(torch.randn(1, F, D, T), torch.randn(1, 2, D, T), iterations=-2)
