"""The shared training loop: learning, determinism, schedules, checkpoints, predict/evaluate and errors."""
import math

import pytest
import torch

from tadlab.data.synthetic import make_world
from tadlab.models.baseline import SnippetClassifier
from tadlab.train import History, _lr_factor, evaluate, fit, load_checkpoint, predict


@pytest.fixture(scope="module")
def world():
    # A clean world (no phases, dropouts, hard negatives or nested classes): these tests are about the loop.
    return make_world("thumos", 24, seed=0, num_snippets=32, feature_dim=8, num_classes=3, noise=0.1, dropout=0.0,
                      phase_amplitude=0.0, false_starts=(0, 0), distractors=(0, 0), nested_classes=0)


def _model(world, seed=0):
    torch.manual_seed(seed)
    return SnippetClassifier(world.feature_dim, world.num_classes, hidden_dim=16)


def _fit(model, world, **kwargs):
    options = {"epochs": 4, "batch_size": 8, "lr": 1e-2, "progress": False, "device": "cpu"}
    return fit(model, world.dataset("training"), **{**options, **kwargs})


def test_loss_decreases_on_a_tiny_world(world):
    history = _fit(_model(world), world, epochs=10, batch_size=4, lr=3e-2)
    assert set(history.train) == {"total", "ce"} and len(history.train["total"]) == 10 == history.epochs
    assert history.train["total"][-1] < 0.7 * history.train["total"][0]
    assert history.seconds > 0


def test_same_seed_gives_identical_history(world):
    kwargs = {"eval_data": world.dataset("validation"), "ground_truth": world.ground_truth,
              "class_names": world.class_names, "eval_every": 2}
    first = _fit(_model(world), world, seed=5, **kwargs)
    second = _fit(_model(world), world, seed=5, **kwargs)
    other = _fit(_model(world), world, seed=6, **kwargs)
    assert first == second and first.seconds != 0
    assert first.train != other.train
    assert [e["epoch"] for e in first.eval] == [2, 4]
    assert len(first.eval[0]["mAP"]) == 10 and 0 <= first.eval[-1]["average_mAP"] <= 1
    assert first.best_epoch in (2, 4) and first.best_metric == max(e["average_mAP"] for e in first.eval)


def test_schedules_warmup_cosine_and_constant(world):
    assert _lr_factor(0, "cosine", 4, 20) == pytest.approx(0.25)
    assert _lr_factor(4, "cosine", 4, 20) == pytest.approx(1.0)
    assert _lr_factor(12, "cosine", 4, 20) == pytest.approx(0.5)
    assert _lr_factor(19, "cosine", 0, 20) == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))
    assert _lr_factor(15, "constant", 4, 20) == 1.0
    cosine = _fit(_model(world), world, schedule="cosine", warmup_epochs=1)
    constant = _fit(_model(world), world, schedule="constant", optimizer="sgd", lr=0.05)
    assert cosine.lr[-1] == pytest.approx(0.0, abs=1e-12) and max(cosine.lr) <= 1e-2
    assert constant.lr == [0.05] * 4


def test_step_schedule_drops_the_lr_after_its_epoch(world):
    # SP-TAD's recipe (Sec. 4.1): lr for 12 epochs, then lr / 10. Steps are counted from 0; 10 steps per epoch.
    assert [_lr_factor(step, "step", 0, 160, drop_step=120) for step in (0, 119, 120, 159)] == [1.0, 1.0, 0.1, 0.1]
    assert _lr_factor(2, "step", 5, 160, drop_step=120) == pytest.approx(3 / 5)  # the warm-up comes first
    assert _lr_factor(130, "step", 5, 160, drop_step=120, step_factor=0.5) == 0.5
    # 14 training videos, batch 8: 2 steps per epoch. History.lr holds the lr at the end of each epoch, i.e. the one
    # the next step uses: epochs 1-2 train at 1e-2, epochs 3-4 at 1e-3.
    history = _fit(_model(world), world, schedule="step", step_epoch=2)
    assert history.lr == pytest.approx([1e-2, 1e-3, 1e-3, 1e-3])
    warm = _fit(_model(world), world, schedule="step", step_epoch=2, warmup_epochs=1, step_factor=0.5)
    assert warm.lr == pytest.approx([1e-2, 5e-3, 5e-3, 5e-3])
    for options, message in [({}, "needs step_epoch"), ({"step_epoch": 4}, "needs step_epoch"),
                             ({"step_epoch": 1, "warmup_epochs": 2}, "after the warm-up"),
                             ({"step_epoch": 2, "step_factor": 0.0}, "step_factor")]:
        with pytest.raises(ValueError, match=message):
            _fit(_model(world), world, schedule="step", **options)
    with pytest.raises(ValueError, match="only used by schedule='step'"):
        _fit(_model(world), world, schedule="cosine", step_epoch=2)


def test_gradient_clipping_changes_the_updates(world):
    # SGD: Adam would undo a uniform rescaling of the gradients.
    free = _fit(_model(world), world, epochs=2, optimizer="sgd", lr=0.1)
    clipped = _fit(_model(world), world, epochs=2, optimizer="sgd", lr=0.1, clip_grad_norm=1e-2)
    assert clipped.train["total"] != free.train["total"]
    assert clipped.train["total"][-1] > free.train["total"][-1]


def test_checkpoints_round_trip(world, tmp_path):
    model = _model(world)
    kwargs = {"eval_data": world.dataset("validation"), "ground_truth": world.ground_truth,
              "class_names": world.class_names, "checkpoint_dir": tmp_path / "ckpt"}
    history = _fit(model, world, **kwargs)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.pt", "last.pt"]
    restored = _model(world, seed=123)
    meta = load_checkpoint(restored, tmp_path / "ckpt" / "last.pt")
    assert meta == {"epoch": 4, "best_epoch": history.best_epoch, "best_metric": history.best_metric}
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)
    best = load_checkpoint(_model(world), tmp_path / "ckpt" / "best.pt")
    assert best["epoch"] == history.best_epoch
    optimizer = torch.optim.AdamW(restored.parameters())
    load_checkpoint(restored, tmp_path / "ckpt" / "last.pt", optimizer=optimizer)
    assert optimizer.state_dict()["state"]  # moments restored
    with pytest.raises(FileExistsError, match="overwrite"):
        _fit(_model(world), world, **kwargs)
    _fit(_model(world), world, overwrite=True, epochs=1, **kwargs)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(restored, tmp_path / "missing.pt")


def _weights(module):
    return {key: value.clone() for key, value in module.state_dict().items()}


def _same(before, module):
    after = module.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.fixture(scope="module")
def checkpoint(world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    _fit(_model(world), world, epochs=1, checkpoint_dir=folder)
    return folder / "last.pt"


def test_a_checkpoint_of_other_shapes_leaves_the_model_unchanged(world, checkpoint):
    model = SnippetClassifier(world.feature_dim, world.num_classes, hidden_dim=32)
    optimizer = torch.optim.AdamW(model.parameters())
    before, file_bytes = _weights(model), checkpoint.read_bytes()
    with pytest.raises(ValueError, match=r"does not fit the model: '.*' has shape \(\d+, \d+.*\), the model's has "
                                         r"\(.*\); was it saved with another config"):
        load_checkpoint(model, checkpoint, optimizer=optimizer)
    assert _same(before, model) and not optimizer.state_dict()["state"] and checkpoint.read_bytes() == file_bytes


def test_missing_or_foreign_optimizer_state_is_reported_before_anything_is_loaded(world, checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    weights_only = tmp_path / "weights.pt"
    torch.save({key: value for key, value in state.items() if key != "optimizer"}, weights_only)
    model = _model(world, seed=7)
    optimizer = torch.optim.AdamW(model.parameters())
    before = _weights(model)
    with pytest.raises(ValueError, match="holds no optimizer state; load it without optimizer="):
        load_checkpoint(model, weights_only, optimizer=optimizer)
    assert _same(before, model) and not optimizer.state_dict()["state"]
    two_groups = torch.optim.AdamW([{"params": [p]} for p in model.parameters()])
    with pytest.raises(ValueError, match=r"optimizer state does not fit the optimizer: parameter groups of sizes"):
        load_checkpoint(model, checkpoint, optimizer=two_groups)
    assert _same(before, model)
    assert load_checkpoint(model, weights_only)["epoch"] == 1  # weights alone load fine
    assert not _same(before, model)


@pytest.mark.parametrize("damage, pattern", [
    (lambda data: b"", r"is empty \(0 bytes\)"),
    (lambda data: data[: len(data) // 2], r"cannot be read \(.*\); it may be truncated"),
    (lambda data: b"not a checkpoint at all", r"cannot be read"),
])
def test_broken_checkpoint_files_name_the_path_and_change_nothing(world, checkpoint, tmp_path, damage, pattern):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(damage(checkpoint.read_bytes()))
    model = _model(world, seed=3)
    before = _weights(model)
    with pytest.raises(ValueError, match=rf"checkpoint '.*broken\.pt' {pattern}"):
        load_checkpoint(model, broken)
    assert _same(before, model)


def test_a_file_that_is_not_a_tadlab_checkpoint(world, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="is not a tadlab checkpoint .*missing \\['model'"):
        load_checkpoint(_model(world), path)


@pytest.mark.parametrize("device, pattern", [
    ("meta", r"device 'meta' cannot run the model \(meta tensors hold no data"),
    ("cuda:7", r"device 'cuda:7' was asked for, but (CUDA is not available|this machine has)"),
    ("xla", r"device must be|device 'xla' cannot run the model"),
])
def test_devices_are_checked_before_anything_moves(world, tmp_path, device, pattern):
    model = _model(world)
    folder = tmp_path / "ckpt"
    _fit(model, world, epochs=1, checkpoint_dir=folder)
    before, file_bytes = _weights(model), (folder / "last.pt").read_bytes()
    items = world.dataset("validation")
    calls = [lambda: _fit(model, world, device=device, checkpoint_dir=folder, overwrite=True),
             lambda: predict(model, items, device=device),
             lambda: evaluate(model, items, world.ground_truth, world.class_names, device=device)]
    for call in calls:
        with pytest.raises(ValueError, match=pattern):
            call()
        assert _same(before, model) and next(model.parameters()).device.type == "cpu"
    assert (folder / "last.pt").read_bytes() == file_bytes


class _Replay(torch.nn.Module):
    """A detector that returns prepared detections in data order (to test predict/evaluate exactly)."""

    def __init__(self, detections):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.queue = list(detections)

    def forward(self, features):
        return {"count": features.shape[0]}

    def detect(self, outputs, shift=0.0):
        taken, self.queue = self.queue[:outputs["count"]], self.queue[outputs["count"]:]
        return [{**d, "segments": d["segments"] + shift} for d in taken]


def _oracle(items):
    return [{"segments": item["segments"].clone(), "scores": torch.ones(len(item["labels"])),
             "labels": item["labels"].clone()} for item in items]


def test_predict_and_evaluate_score_the_ground_truth_as_perfect(world):
    items = world.dataset("validation")
    detections = predict(_Replay(_oracle(items)), items, device="cpu", batch_size=3)
    assert len(detections) == len(items)
    for det, item in zip(detections, items):
        assert torch.equal(det["segments"], item["segments"])
    metrics = evaluate(_Replay(_oracle(items)), items, world.ground_truth, world.class_names, device="cpu",
                       batch_size=3)
    assert metrics.average_mAP == pytest.approx(1.0, abs=1e-6)
    # detect kwargs pass through: shifting every segment by half its video lowers the mAP.
    shifted = evaluate(_Replay(_oracle(items)), items, world.ground_truth, world.class_names, device="cpu",
                       shift=3.0)
    assert shifted.average_mAP < 0.9
    # With a subset, predictions on videos of another subset are false positives, as in the official code: ranked
    # below every true positive they cost nothing, tied with them they do.
    both = list(world.dataset("validation")) + list(world.dataset("testing"))
    lower = [{**d, "scores": d["scores"] * (0.5 if i >= len(items) else 1.0)} for i, d in enumerate(_oracle(both))]
    with pytest.warns(UserWarning, match="count as false positives"):
        assert evaluate(_Replay(lower), both, world.ground_truth, world.class_names, device="cpu",
                        subset="validation").average_mAP == pytest.approx(1.0, abs=1e-6)
    with pytest.warns(UserWarning, match="count as false positives"):
        assert evaluate(_Replay(_oracle(both)), both, world.ground_truth, world.class_names, device="cpu",
                        subset="validation").average_mAP < 1.0


def test_bad_arguments_are_named(world):
    model = _model(world)
    with pytest.raises(ValueError, match=r"optimizer.*'adamw'.*'adam'"):
        _fit(model, world, optimizer="adam")
    with pytest.raises(ValueError, match=r"schedule.*'cosine'.*'linear'"):
        _fit(model, world, schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        _fit(model, world, epochs=0)
    with pytest.raises(ValueError, match="ground_truth"):
        _fit(model, world, eval_data=world.dataset("validation"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="amp"):
            _fit(model, world, amp=True)
    with pytest.raises(ValueError, match="ground_truth has no entry"):
        evaluate(model, world.dataset("validation"), {"database": {}}, world.class_names, device="cpu")


def test_progress_bar_runs(world, capsys):
    history = _fit(_model(world), world, epochs=1, progress=True)
    assert isinstance(history, History) and history.epochs == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_fit_on_cuda_with_amp(world, amp_dtype):
    model = _model(world)
    history = _fit(model, world, device="cuda", amp=True, amp_dtype=amp_dtype, eval_data=world.dataset("validation"),
                   ground_truth=world.ground_truth, class_names=world.class_names)
    assert next(model.parameters()).device.type == "cuda"
    assert all(math.isfinite(v) for v in history.train["total"]) and len(history.eval) == 4


def test_evaluate_leaves_out_classes_absent_from_the_scored_videos(world):
    import warnings

    items = list(world.dataset("validation"))
    present = {int(k) for item in items for k in item["labels"]}
    absent = next(k for k in range(world.num_classes + 5) if k not in present)
    names = world.class_names + [f"unseen_{i}" for i in range(5)]  # label indices past the world's classes
    extra = [{**d, "segments": torch.cat([d["segments"], d["segments"][:1]]),
              "scores": torch.cat([d["scores"], torch.ones(1)]),
              "labels": torch.cat([d["labels"], torch.full((1,), absent)])} for d in _oracle(items)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unknown-label warning: the class is declared, just absent here
        metrics = evaluate(_Replay(extra), items, world.ground_truth, names, device="cpu")
    assert metrics.average_mAP == pytest.approx(1.0, abs=1e-6)
