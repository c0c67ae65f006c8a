"""Small helpers every module shares: seeding, device choice, argument checks, warnings that point at the caller.

This module imports torch only inside the functions that need it: ``tadlab.eval`` uses it and must start without
torch (``python -m tadlab.eval`` on a results file needs numpy only).
"""
from __future__ import annotations

import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np

_PACKAGE_PREFIX = str(Path(__file__).resolve().parent) + os.sep
TRAINABLE_DEVICE_TYPES = ("cpu", "cuda", "mps")  # devices whose tensors hold data the training loop can use


def seed_everything(seed: int):
    """Seed Python, NumPy and torch with one number; return a ``torch.Generator`` seeded the same way.

    The same seed gives the same numbers on the same machine and library versions.
    """
    import torch

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


def resolve_device(device="auto"):
    """Turn ``"auto"`` into CUDA when it is present, else CPU; check any other device before anything moves there.

    Accepts ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device`` of those types, present on this
    machine. Raises ``ValueError`` naming the device otherwise: ``"meta"`` (tensors without data: a model moved
    there loses its weights), a CUDA index past the GPUs present, a backend this machine lacks.
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}") from exc
    if device.type not in TRAINABLE_DEVICE_TYPES:
        why = " (meta tensors hold no data: the weights would be lost)" if device.type == "meta" else ""
        raise ValueError(f"device {str(device)!r} cannot run the model{why}; expected 'auto', 'cpu', 'cuda', "
                         f"'cuda:N' or 'mps'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} was asked for, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s) (indices from 0)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but MPS is not available on this machine")
    return device


def check_choice(name: str, value, choices) -> None:
    """Raise ``ValueError`` naming the argument when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)!r}, got {value!r}")


def warn_at_caller(message: str, category=UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside the tadlab package: the user's line that called
    into tadlab, however deep inside tadlab the warning is raised."""
    frame, level = sys._getframe(1), 2  # stacklevel 2 is the frame that called warn_at_caller
    while frame is not None and os.path.realpath(frame.f_code.co_filename).startswith(_PACKAGE_PREFIX):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def write_metrics(path, metrics: dict) -> None:
    """Write a notebook's headline metrics as JSON (papermill's ``results_path``); never overwrite a file."""
    import json

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"results_path {str(path)!r} already exists; choose a new path or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
