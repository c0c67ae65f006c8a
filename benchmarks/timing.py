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


def train_step(model: torch.nn.Module, batch: dict, lr: float = 1e-4):
    """A function doing one AdamW step of ``model.loss`` on ``batch`` (every detector's training contract)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def step():
        terms = model.loss(model(batch["features"]), batch)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    return step


def detector_times(model: torch.nn.Module, batch: dict, device, repeats: int, **detect_options: dict) -> dict:
    """Median seconds of a detector's phases: ``"train"`` (one step on the whole batch), ``"forward"`` (the first
    video alone, no grad) and, per keyword, ``model.detect(outputs, **options)`` on that video's outputs."""
    model.train()
    times = {"train": time_it(train_step(model, batch), device, repeats)}
    model.eval()
    one = batch["features"][:1]
    with torch.no_grad():
        outputs = model(one)
        times["forward"] = time_it(lambda: model(one), device, repeats)
        for name, options in detect_options.items():
            times[name] = time_it(lambda: model.detect(outputs, **options), device, repeats)
    return times
