"""Small helpers every module shares: seeding, device choice, argument checks."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch with one number; return a torch generator seeded the same way.

    The same seed gives the same numbers on the same machine and library versions.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA when it is present, else CPU; pass any other device through.

    Raises ``ValueError`` for a CUDA device on a machine without one.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but CUDA is not available on this machine")
    return device


def check_choice(name: str, value, choices) -> None:
    """Raise ``ValueError`` naming the argument when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)!r}, got {value!r}")


def write_metrics(path, metrics: dict) -> None:
    """Write a notebook's headline metrics as JSON (papermill's ``results_path``); never overwrite a file."""
    import json
    from pathlib import Path

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"results_path {str(path)!r} already exists; choose a new path or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
