"""What the detector benchmarks share: a random collated batch and a median timer that waits for the GPU."""
from __future__ import annotations

import statistics
import time

import torch


def random_batch(feature_dim: int, num_snippets: int, num_classes: int, batch_size: int, device,
                 generator: torch.Generator, instances: tuple = (1, 3)) -> dict:
    """Random features (B, C, T) and ``instances`` (min, max) random disjoint instances per video, collated as
    :func:`tadlab.data.collate_videos` does (segments zero-padded, labels padded with -1)."""
    low, high = instances
    segments = torch.zeros(batch_size, high, 2)
    labels = torch.full((batch_size, high), -1, dtype=torch.int64)
    for b in range(batch_size):
        count = int(torch.randint(low, high + 1, (), generator=generator))
        cuts = torch.randperm(num_snippets - 1, generator=generator)[: 2 * count].sort().values + 1  # in (0, T)
        segments[b, :count] = cuts.reshape(count, 2).float()
        labels[b, :count] = torch.randint(0, num_classes, (count,), generator=generator)
    return {"video_ids": [f"v{b}" for b in range(batch_size)],
            "features": torch.randn(batch_size, feature_dim, num_snippets, generator=generator).to(device),
            "segments": segments.to(device), "labels": labels.to(device),
            "durations": torch.full((batch_size,), 60.0, dtype=torch.float64)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
