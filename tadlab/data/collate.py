"""Batching video items: stack features, pad segments and labels.

An item (from the synthetic world or real features) is::

    {"video_id": str, "features": float32 (C, T), "segments": float32 (N, 2) snippet units,
     "labels": int64 (N,), "duration": float seconds}
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

_ITEM_KEYS = ("video_id", "features", "segments", "labels", "duration")


def collate_videos(items: Sequence[Mapping]) -> dict:
    """Batch video items (use as a DataLoader's ``collate_fn``).

    Returns ``{"video_ids": list[str] (B), "features": (B, C, T), "segments": (B, N_max, 2) zero-padded,
    "labels": (B, N_max) int64 padded with -1, "durations": float64 (B,)}``. All items must share C and T;
    new tensors are made on the first item's features' device.
    """
    if isinstance(items, Mapping) or len(items) == 0:
        raise ValueError(f"items must be a non-empty list of video items, got {type(items).__name__} "
                         f"of length {len(items) if hasattr(items, '__len__') else '?'}")
    for i, item in enumerate(items):
        missing = [key for key in _ITEM_KEYS if key not in item]
        if missing:
            raise ValueError(f"items[{i}] (video {item.get('video_id')!r}) lacks keys {missing}; "
                             f"expected {list(_ITEM_KEYS)}")
        video_id, features = item["video_id"], item["features"]
        if not torch.is_tensor(features) or features.dim() != 2:
            shape = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
            raise ValueError(f"items[{i}] (video {video_id!r}): features must be a 2-D tensor (C, T), got {shape}")
        segments, labels = item["segments"], item["labels"]
        if not (torch.is_tensor(segments) and torch.is_tensor(labels)):
            raise TypeError(f"items[{i}] (video {video_id!r}): segments and labels must be tensors, got "
                            f"{type(segments).__name__} and {type(labels).__name__}")
        if segments.dim() != 2 or segments.shape[-1] != 2 or labels.shape != segments.shape[:1]:
            raise ValueError(f"items[{i}] (video {video_id!r}): expected segments (N, 2) and labels (N,), got "
                             f"{tuple(segments.shape)} and {tuple(labels.shape)}")
    first = items[0]
    shape = tuple(first["features"].shape)
    for i, item in enumerate(items[1:], start=1):
        if tuple(item["features"].shape) != shape:
            c, t = item["features"].shape
            what = "channels C" if c != shape[0] else "snippets T"
            raise ValueError(
                f"items disagree in {what}: video {first['video_id']!r} has features (C, T) = {shape}, "
                f"video {item['video_id']!r} (items[{i}]) has {(c, t)}; every item of a batch needs the same C and T")
    device = first["features"].device
    batch_size, max_count = len(items), max(len(item["labels"]) for item in items)
    seg_dtype = first["segments"].dtype if first["segments"].is_floating_point() else torch.float32
    segments = torch.zeros(batch_size, max_count, 2, dtype=seg_dtype, device=device)
    labels = torch.full((batch_size, max_count), -1, dtype=torch.int64, device=device)
    for b, item in enumerate(items):
        count = len(item["labels"])
        segments[b, :count] = item["segments"].to(device=device, dtype=seg_dtype)
        labels[b, :count] = item["labels"].to(device=device, dtype=torch.int64)
    return {
        "video_ids": [str(item["video_id"]) for item in items],
        "features": torch.stack([item["features"].to(device) for item in items]),
        "segments": segments,
        "labels": labels,
        "durations": torch.tensor([float(item["duration"]) for item in items], dtype=torch.float64, device=device),
    }
