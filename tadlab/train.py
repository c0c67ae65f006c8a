"""One training loop for every detector, plus one-line prediction and evaluation.

A detector only needs ``forward(features) -> outputs``, ``loss(outputs, batch) -> {"total", ...}`` and
``detect(outputs, **kwargs) -> list of {"segments", "scores", "labels"}`` (segments in snippet units).

    history = fit(model, world.dataset("training"), epochs=20, eval_data=world.dataset("validation"),
                  ground_truth=world.ground_truth, class_names=world.class_names)
    metrics = evaluate(model, world.dataset("validation"), world.ground_truth, world.class_names)

Reproducible: ``fit`` seeds Python, NumPy and torch from ``seed`` and shuffles with a seeded generator in the
main process (``num_workers=0``), so on the CPU the same seed and the same initial model give the same history.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tadlab.data.collate import collate_videos
from tadlab.data.schema import as_ground_truth, detections_to_results
from tadlab.eval import ANET_TIOU, evaluate_detection
from tadlab.utils import check_choice, resolve_device, seed_everything

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "step")
AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class History:
    """What ``fit`` measured.

    ``train[name]``: the mean of loss term ``name`` over each epoch's videos (one value per epoch);
    ``lr``: the learning rate at the end of each epoch; ``eval``: one dict per evaluation with "epoch",
    "average_mAP", "mAP" (list, one per tIoU threshold) and "tiou_thresholds"; ``best_epoch`` and ``best_metric``:
    the epoch kept as best (highest average mAP, or lowest training loss without evaluation);
    ``seconds``: wall-clock training time (not part of equality, so two runs compare equal on their numbers).
    """

    train: dict = field(default_factory=dict)
    lr: list = field(default_factory=list)
    eval: list = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def epochs(self) -> int:
        return len(self.lr)


def fit(model: torch.nn.Module, train_data, *, epochs: int = 10, batch_size: int = 16, lr: float = 1e-3,
        weight_decay: float = 1e-4, optimizer: str = "adamw", momentum: float = 0.9, schedule: str = "cosine",
        warmup_epochs: float = 0.0, step_epoch: int | None = None, step_factor: float = 0.1,
        clip_grad_norm: float | None = None, eval_data=None, ground_truth=None,
        class_names=None, eval_every: int = 1, tiou_thresholds=ANET_TIOU, eval_subset: str | None = None,
        detect_kwargs: dict | None = None, checkpoint_dir=None, overwrite: bool = False, device="auto",
        amp: bool = False, amp_dtype: str = "bfloat16", seed: int = 0, progress: bool = True) -> History:
    """Train ``model`` on ``train_data`` (a Dataset or list of video items) and return its :class:`History`.

    Optimiser "adamw" or "sgd" (with ``momentum``); schedule per step, "cosine" (to zero), "constant" or "step"
    (``lr`` until epoch ``step_epoch``, then ``lr * step_factor``), each after a linear warm-up of
    ``warmup_epochs``; gradients clipped to ``clip_grad_norm`` when given. SP-TAD's recipe (Sec. 4.1: AdamW,
    weight decay 1e-4, batch 16, lr 1e-4 for 12 epochs, then 1e-5 for 4) is ``epochs=16, lr=1e-4,
    schedule="step", step_epoch=12`` (``step_factor`` 0.1 by default).
    With ``eval_data``, ``ground_truth`` (ActivityNet JSON dict or path) and ``class_names``, the model is
    evaluated every ``eval_every`` epochs and after the last one (see :func:`evaluate`).
    With ``checkpoint_dir``: "last.pt" after every epoch and "best.pt" at the best epoch (by average mAP, or by
    training loss without evaluation); existing checkpoints there are an error unless ``overwrite=True``.
    ``amp`` (CUDA only): autocast to ``amp_dtype`` ("bfloat16" or "float16", the latter with a GradScaler).
    The model is left on ``device`` in eval mode.
    """
    check_choice("optimizer", optimizer, set(OPTIMIZERS))
    check_choice("schedule", schedule, set(SCHEDULES))
    check_choice("amp_dtype", amp_dtype, set(AMP_DTYPES))
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if warmup_epochs < 0 or clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"warmup_epochs must be >= 0 and clip_grad_norm None or > 0, got {warmup_epochs!r} "
                         f"and {clip_grad_norm!r}")
    if schedule == "step":
        if isinstance(step_epoch, bool) or not isinstance(step_epoch, int) or not warmup_epochs <= step_epoch < epochs:
            raise ValueError(f"schedule='step' needs step_epoch, an int epoch after the warm-up ({warmup_epochs!r} "
                             f"epochs) and before the last ({epochs}), after which lr is multiplied by step_factor; "
                             f"got step_epoch={step_epoch!r}")
        if not 0 < step_factor <= 1:
            raise ValueError(f"step_factor must be in (0, 1], got {step_factor!r}")
    elif step_epoch is not None:
        raise ValueError(f"step_epoch={step_epoch!r} is only used by schedule='step', got schedule={schedule!r}")
    if eval_data is not None and (ground_truth is None or class_names is None):
        raise ValueError("eval_data needs ground_truth and class_names too (to compute mAP); got "
                         f"ground_truth={'None' if ground_truth is None else 'given'}, "
                         f"class_names={'None' if class_names is None else 'given'}")
    device = resolve_device(device)
    if amp and device.type != "cuda":
        raise ValueError(f"amp=True needs a CUDA device, got device {str(device)!r}; use amp=False on the CPU")
    if len(train_data) == 0:
        raise ValueError("train_data is empty")
    checkpoints = _checkpoint_paths(checkpoint_dir, overwrite)
    if eval_data is not None:
        ground_truth = as_ground_truth(ground_truth)  # validate once, not at every evaluation

    generator = seed_everything(seed)
    loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, collate_fn=collate_videos,
                        num_workers=0, generator=generator)
    model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    total_steps = epochs * len(loader)
    warmup_steps = round(warmup_epochs * len(loader))
    drop_step = None if step_epoch is None else step_epoch * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _lr_factor(step, schedule, warmup_steps,
                                                                                total_steps, drop_step, step_factor))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == "float16")

    history, best_score = History(), None
    started = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        sums, count = {}, 0
        for batch in loader:
            batch = _to_device(batch, device)
            with torch.autocast(device.type, dtype=AMP_DTYPES[amp_dtype], enabled=amp):
                outputs = model(batch["features"])
                losses = model.loss(outputs, batch)
            if "total" not in losses:
                raise ValueError(f"model.loss must return a dict with 'total', got keys {sorted(losses)}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            if clip_grad_norm is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
            scaler.step(opt)
            scaler.update()
            scheduler.step()
            size = batch["features"].shape[0]
            count += size
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * size
        for name, value in sums.items():
            history.train.setdefault(name, []).append(value / count)
        history.lr.append(opt.param_groups[0]["lr"])

        # Best epoch: highest average mAP among evaluated epochs, or lowest training loss without evaluation.
        score = None if eval_data is not None else -history.train["total"][-1]
        if eval_data is not None and (epoch % eval_every == 0 or epoch == epochs):
            metrics = evaluate(model, eval_data, ground_truth, class_names, tiou_thresholds, subset=eval_subset,
                               device=device, batch_size=batch_size, **(detect_kwargs or {}))
            history.eval.append({"epoch": epoch, "average_mAP": float(metrics.average_mAP),
                                 "mAP": [float(m) for m in metrics.mAP],
                                 "tiou_thresholds": [float(t) for t in metrics.tiou_thresholds]})
            score = float(metrics.average_mAP)
        is_best = score is not None and (best_score is None or score > best_score)
        if is_best:
            best_score = score
            history.best_epoch, history.best_metric = epoch, (score if eval_data is not None else -score)
        if checkpoints:
            state = _checkpoint_state(model, opt, epoch, history)
            torch.save(state, checkpoints["last"])
            if is_best:
                torch.save(state, checkpoints["best"])
        if progress:
            bar.set_postfix(loss=f"{history.train['total'][-1]:.4f}",
                            mAP=f"{history.eval[-1]['average_mAP']:.3f}" if history.eval else "-")
    bar.close()
    history.seconds = time.perf_counter() - started
    model.eval()
    return history


def load_checkpoint(model: torch.nn.Module, path, optimizer: torch.optim.Optimizer | None = None,
                    map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`fit` into ``model`` (and ``optimizer``), safely (``weights_only=True``).

    The whole file is read and checked first (a tadlab checkpoint; every weight present, known and of the model's
    shape; with ``optimizer``, its state present and matching the optimizer's groups and parameter shapes); only
    then is anything copied, so on any error ``model`` and ``optimizer`` are left unchanged.
    Returns the checkpoint's metadata: {"epoch", "best_epoch", "best_metric"}.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {str(path)!r} is empty (0 bytes): an interrupted save? Use another checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, OSError, UnpicklingError... for broken files
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); it may be "
                         f"truncated (an interrupted save) or not a torch checkpoint") from exc
    missing = [key for key in ("model", "epoch", "best_epoch", "best_metric")
               if not isinstance(state, dict) or key not in state]
    if missing or not isinstance(state["model"], dict):
        raise ValueError(f"checkpoint {str(path)!r} is not a tadlab checkpoint (expected a dict with 'model', "
                         f"'optimizer', 'epoch', 'best_epoch', 'best_metric'; missing {missing})")
    _check_weights(state["model"], model.state_dict(), path)
    if optimizer is not None:
        if "optimizer" not in state:
            raise ValueError(f"checkpoint {str(path)!r} holds no optimizer state; load it without optimizer= "
                             f"(weights only) or use a checkpoint written by fit")
        _check_optimizer_state(state["optimizer"], optimizer, path)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return {key: state[key] for key in ("epoch", "best_epoch", "best_metric")}


def _check_weights(saved: dict, expected: dict, path: Path) -> None:
    """Same keys, tensors of the same shapes (and real vs complex kind) as the model's state dict."""
    where = f"checkpoint {str(path)!r} does not fit the model"
    missing = [key for key in expected if key not in saved]
    unexpected = [key for key in saved if key not in expected]
    if missing or unexpected:
        raise ValueError(f"{where}: {len(missing)} weight(s) missing (e.g. {missing[:3]}), {len(unexpected)} "
                         f"unexpected (e.g. {unexpected[:3]}); was it saved from another model class or config?")
    for key, target in expected.items():
        value = saved[key]
        if not torch.is_tensor(value):
            raise ValueError(f"{where}: {key!r} holds {type(value).__name__}, expected a tensor")
        if tuple(value.shape) != tuple(target.shape) or value.is_complex() != target.is_complex():
            raise ValueError(f"{where}: {key!r} has shape {tuple(value.shape)} ({value.dtype}), the model's has "
                             f"{tuple(target.shape)} ({target.dtype}); was it saved with another config?")


def _check_optimizer_state(saved, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Groups of the same sizes and per-parameter state tensors of their parameters' shapes."""
    where = f"checkpoint {str(path)!r}: the optimizer state does not fit the optimizer"
    if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict)
            and isinstance(saved.get("param_groups"), list)):
        raise ValueError(f"{where}: expected a dict with 'state' and 'param_groups'")
    groups = optimizer.param_groups
    sizes = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in saved["param_groups"]]
    if sizes != [len(g["params"]) for g in groups]:
        raise ValueError(f"{where}: parameter groups of sizes {sizes}, the optimizer's are "
                         f"{[len(g['params']) for g in groups]}")
    parameters = {index: parameter for group, saved_group in zip(groups, saved["param_groups"])
                  for index, parameter in zip(saved_group["params"], group["params"])}
    for index, values in saved["state"].items():
        if index not in parameters or not isinstance(values, dict):
            raise ValueError(f"{where}: state for parameter {index!r}, which no group lists")
        shape = tuple(parameters[index].shape)
        for name, value in values.items():
            if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) != shape:
                raise ValueError(f"{where}: {name!r} of parameter {index} has shape {tuple(value.shape)}, the "
                                 f"parameter's is {shape}")


@torch.no_grad()
def predict(model: torch.nn.Module, data, device="auto", batch_size: int = 32, **detect_kwargs) -> list[dict]:
    """Detections for every video of ``data`` (Dataset or list of items), in order, on the CPU.

    Returns a list of {"segments": (M, 2) snippet units, "scores": (M,), "labels": (M,) int64}; the model is
    moved to ``device`` and left in eval mode; ``detect_kwargs`` go to ``model.detect``.
    """
    return [det for _, det in _predict_videos(model, data, resolve_device(device), batch_size, detect_kwargs)]


def evaluate(model: torch.nn.Module, data, ground_truth, class_names, tiou_thresholds=ANET_TIOU,
             subset: str | None = None, device="auto", batch_size: int = 32, **detect_kwargs):
    """ActivityNet mAP of ``model`` on ``data`` against ``ground_truth`` (ActivityNet JSON dict, path, or the
    dict of :class:`~tadlab.data.schema.VideoAnnotations` that ``load_ground_truth`` returns).

    Only the ground truth of the videos in ``data`` is scored (so passing the validation items with the whole
    world's ground truth evaluates on the validation videos), further filtered by ``subset`` when given.
    ``class_names[k]`` names label k. Detections of a class that has no instance among the scored videos (a small
    split need not show every class) are left out: mAP averages over the ground truth's classes, so they cannot
    change it, and the official code would stop on them. Returns :class:`tadlab.eval.DetectionMetrics`.
    """
    scored, results = detection_results(model, data, ground_truth, class_names, subset, device, batch_size,
                                        **detect_kwargs)
    return evaluate_detection(scored, results, tiou_thresholds=tiou_thresholds, subset=subset)


def detection_results(model: torch.nn.Module, data, ground_truth, class_names, subset: str | None = None,
                      device="auto", batch_size: int = 32, **detect_kwargs) -> tuple[dict, dict]:
    """What :func:`evaluate` scores: ``(ground truth of the videos in data, results dict in seconds)``."""
    videos = as_ground_truth(ground_truth)
    pairs = list(_predict_videos(model, data, resolve_device(device), batch_size, detect_kwargs))
    if not pairs:
        raise ValueError("data is empty; evaluate needs at least one video")
    ids = [item["video_id"] for item, _ in pairs]
    missing = [video_id for video_id in ids if video_id not in videos]
    if missing:
        raise ValueError(f"ground_truth has no entry for {len(missing)} video(s) of data, e.g. {missing[:3]}")
    scored = {video_id: videos[video_id] for video_id in ids}
    present = {label for video in scored.values() if subset is None or video.subset == subset for label in video.labels}
    known = torch.tensor([name in present for name in class_names])
    detections = [{key: value[known[det["labels"]]] for key, value in det.items()} for _, det in pairs]
    results = detections_to_results(detections, ids, [float(item["duration"]) for item, _ in pairs],
                                    int(pairs[0][0]["features"].shape[-1]), list(class_names))
    return scored, results


def _predict_videos(model, data, device: torch.device, batch_size: int, detect_kwargs: dict):
    """Yield (item, detection) for every item of ``data`` in order; detections on the CPU."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=lambda items: items, num_workers=0)
    model.to(device)
    model.eval()
    for items in loader:
        batch = _to_device(collate_videos(items), device)
        detections = model.detect(model(batch["features"]), **detect_kwargs)
        for item, det in zip(items, detections):
            yield item, {key: value.detach().cpu() for key, value in det.items()}


def _to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
            for key, value in batch.items()}


def _lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int, drop_step: int | None = None,
               step_factor: float = 0.1) -> float:
    """Multiplier of the base learning rate before optimiser step ``step + 1`` (steps counted from 0); "step" drops
    by ``step_factor`` from optimiser step ``drop_step`` (the first step of epoch ``step_epoch + 1``) on."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return step_factor if step >= drop_step else 1.0
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _checkpoint_paths(checkpoint_dir, overwrite: bool) -> dict:
    if checkpoint_dir is None:
        return {}
    directory = Path(checkpoint_dir)
    paths = {"last": directory / "last.pt", "best": directory / "best.pt"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"checkpoint_dir already holds {existing}; pass overwrite=True or choose a new folder")
    directory.mkdir(parents=True, exist_ok=True)
    return paths


def _checkpoint_state(model, opt, epoch: int, history: History) -> dict:
    # Plain tensors, numbers and dicts only, so torch.load(weights_only=True) can read it back.
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
            "best_epoch": history.best_epoch, "best_metric": history.best_metric}
