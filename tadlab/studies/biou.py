"""Notebook 03's experiment: each mask loss descended on ground-truth masks directly, no network.

- ``03_descent.json``: per seed of :data:`SEEDS` one ActivityNet-like world (:func:`mask_world`) and the masks of its
  testing instances (:func:`instance_masks`). Each mask starts from a sharp prediction of itself (logits ±4) moved
  ``s`` snippets later, for the two shifts of :func:`descent_shifts` (k // 2 − 1: the boundary bands of prediction
  and target still overlap; k // 2 + 2: they do not), and Adam (lr :data:`LR`) descends one free logit per snippet
  for :data:`DESCENT_STEPS` steps under each loss of :func:`descent_losses` (k = :data:`KERNEL_SIZE`). A row
  "s = SHIFT: LOSS" holds the boundary error at the steps of :func:`record_steps` and the last masks' mean level on
  the target's snippets (:func:`descend`).

Notebook 03 (section 5) runs the same functions live at its own profile and kernel size and prints the stored rows;
its single-world checks (sections 4 and 5) use :func:`mask_world`, :func:`instance_masks` and :func:`descend` too.
"""
from __future__ import annotations

import torch

from tadlab.studies import Result

NOTEBOOK = "03"
KERNEL_SIZE = 7  # k of the erosion in every bIoU and λ·L2 term (the notebook's default)
SEEDS = (0, 1, 2)  # one world each; the notebook's seeds at "full" from its default seed 0
DESCENT_STEPS = {"smoke": 30, "ci": 300, "full": 300}  # Adam steps per profile
LR = 0.1  # Adam's learning rate on the free logits
FULL_VIDEOS = 500  # videos of the "full" world (about 100 of them testing, about 155 instance masks)
RECORDED = (0, 50, 100)  # steps whose boundary error is recorded (those before the last), besides the last


def descent_shifts(kernel_size: int) -> tuple[int, int]:
    """The two starting shifts (snippets late): k // 2 − 1, the bands still overlap; k // 2 + 2, they do not."""
    return kernel_size // 2 - 1, kernel_size // 2 + 2


RESULTS = [
    Result("03_descent.json", jobs=("descent",), seeds=SEEDS,
           meta={"kernel_size": KERNEL_SIZE, "steps": dict(DESCENT_STEPS), "lr": LR,
                 "shifts": list(descent_shifts(KERNEL_SIZE))}),
]


def descent_losses(kernel_size: int) -> dict:
    """One loss per row, ``{name: loss_fn(masks, targets)}`` on ``(N, T)`` masks (:func:`tadlab.losses.mask_loss`,
    kernel ``kernel_size``): IoU and bIoU, each with the dice term, without and with the λ·L2 penalty; and BCE."""
    from tadlab.losses import mask_loss

    return {
        "IoU + dice": lambda p, g: mask_loss(p, g, "iou", kernel_size),
        "IoU + dice + λ·L2": lambda p, g: mask_loss(p, g, "iou", kernel_size, l2_penalty=True),
        "bIoU + dice": lambda p, g: mask_loss(p, g, "biou", kernel_size, l2_penalty=False),
        "bIoU + dice + λ·L2 (Eq. 6)": lambda p, g: mask_loss(p, g, "biou", kernel_size),
        "BCE": lambda p, g: mask_loss(p, g, "bce"),
    }


def record_steps(steps: int) -> tuple[int, ...]:
    """The steps at which :func:`descend` records the boundary error: those of :data:`RECORDED` before ``steps``,
    and ``steps``."""
    return tuple(step for step in RECORDED if step < steps) + (steps,)


def mask_world(seed: int, profile: str):
    """The anet world whose testing masks notebook 03 descends on: at "full" ``make_world("anet", 500, seed)``
    (default splits), otherwise the profile's :func:`~tadlab.experiments.standard_world`."""
    from tadlab.data.synthetic import make_world
    from tadlab.experiments import standard_world

    return make_world("anet", FULL_VIDEOS, seed=seed) if profile == "full" else standard_world("anet", profile, seed)


def instance_masks(seed: int, profile: str) -> torch.Tensor:
    """The ground-truth masks of :func:`mask_world`'s testing instances, one per instance, float64 ``(N, T)``."""
    from tadlab.labels import global_masks

    world = mask_world(seed, profile)
    found = []
    for item in world.dataset("testing"):
        masks, valid = global_masks(item["segments"][None], world.num_snippets, labels=item["labels"][None])
        found.append(masks[0][:, valid[0]].T.unique(dim=0))  # (instances, T): the snippets of one instance share it
    return torch.cat(found).double()


def extent(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, T)`` masks -> the first active snippet and one past the last (threshold 0.5), ``(N,)`` each."""
    active = (masks >= 0.5).to(torch.uint8)
    return active.argmax(1), masks.shape[1] - active.flip(1).argmax(1)


def descend(loss_fn, target_masks: torch.Tensor, shift: int, steps: int, betas=(0.9, 0.999), final: bool = False):
    """Adam on free logits, from a sharp prediction of ``target_masks`` ``(N, T)`` moved ``shift`` snippets later,
    for ``steps`` steps of ``loss_fn(masks, targets)``.

    Returns ``{"boundary_error_STEP": ..., "foreground_level": ...}``: at each step of :func:`record_steps`, the mean
    over masks of (|start error| + |end error|) / 2 in snippets (threshold 0.5), and the last masks' mean on the
    target's snippets; with ``final``, ``(that dict, the last masks (N, T))``.
    """
    record = record_steps(steps)
    logits = torch.full_like(target_masks, -4.0)
    logits[:, shift:] = 8.0 * target_masks[:, :target_masks.shape[1] - shift] - 4.0  # the target, ±4, moved later
    logits.requires_grad_()
    optimiser = torch.optim.Adam([logits], lr=LR, betas=betas)
    true_start, true_end = extent(target_masks)
    errors = {}
    for step in range(steps + 1):
        if step in record:
            start, end = extent(torch.sigmoid(logits.detach()))
            error = ((start - true_start).abs() + (end - true_end).abs()).double().mean() / 2
            errors[f"boundary_error_{step}"] = float(error)
        if step < steps:
            optimiser.zero_grad()
            loss_fn(torch.sigmoid(logits), target_masks).backward()
            optimiser.step()
    last = torch.sigmoid(logits.detach())
    errors["foreground_level"] = float(last[target_masks > 0].mean())
    return (errors, last) if final else errors


def descent_rows(seed: int, profile: str, kernel_size: int = KERNEL_SIZE) -> dict:
    """The rows of one seed: ``{"s = SHIFT: LOSS": metrics}`` for both shifts and every loss, on the testing masks of
    world ``seed`` at ``profile`` (metrics of :func:`descend`, the number of masks, the subset)."""
    masks = instance_masks(seed, profile)
    steps = DESCENT_STEPS[profile]
    return {f"s = {shift}: {name}": {**descend(loss_fn, masks, shift, steps), "masks": len(masks), "subset": "testing"}
            for shift in descent_shifts(kernel_size) for name, loss_fn in descent_losses(kernel_size).items()}


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    """The rows of ``job`` "descent" for ``seed`` (on the CPU, float64, whatever ``device``: seconds per seed)."""
    if job != "descent":
        raise ValueError(f"unknown job {job!r} of study 'biou'; its jobs are ['descent']")
    return {**descent_rows(seed, profile),
            "meta": {"steps": DESCENT_STEPS[profile], "record": list(record_steps(DESCENT_STEPS[profile]))}}
