"""What a synthetic video's snippets show: evidence of each instance's phases, hard negatives and nuisances.

:func:`render_features` turns a :class:`~tadlab.data.layout.Layout` into features ``(V, C, T)`` (see
:mod:`tadlab.data.synthetic` for the model and :class:`~tadlab.data.synthetic.WorldConfig` for the knobs):

    x[:, t] = gain * sum_events amplitude_e * profile_e(t) * prototype_e  +  drift(t) + offset + noise * N(0, I)

Events are an instance's onset, core and offset (prototypes ON, its class, OFF), false starts (ON) and distractors
(a class, weaker); a core may have a dropout, a dip of its profile. All events of all videos are drawn at once.
"""
from __future__ import annotations

import numpy as np
import torch

from tadlab.data.layout import _log_normal


def render_features(rng: np.random.Generator, config, layout) -> torch.Tensor:
    """Features ``(V, C, T)`` float32 tensor of the instances in ``layout`` plus hard negatives and nuisances."""
    V, T, C, K = layout.num_videos, config.num_snippets, config.feature_dim, config.num_classes
    ON, OFF = K, K + 1  # prototype indices of the shared onset and offset
    shared = _unit(rng.standard_normal(C))
    specific = _unit(rng.standard_normal((K, C)))
    prototypes = np.concatenate([_unit(config.class_similarity * shared + (1 - config.class_similarity) * specific),
                                 _unit(rng.standard_normal((2, C)))])                       # (K + 2, C)
    jitter = config.prototype_jitter / np.sqrt(C) * rng.standard_normal((V, K + 2, C))
    video_prototypes = _unit(prototypes[None] + jitter).astype(np.float32)                 # (V, K + 2, C)

    # Instances: onset, core and offset events (rendered at the layout's unrounded times).
    video, start, end, label = layout.instance_video, layout.instances[:, 0], layout.instances[:, 1], layout.label
    n = len(video)
    length = end - start
    onset = length * rng.uniform(*config.phase, size=n)
    offset = length * rng.uniform(*config.phase, size=n)
    core_amplitude = rng.uniform(*config.amplitude, size=n)
    events = [
        (video, start, start + onset, np.full(n, ON), config.phase_amplitude * core_amplitude),
        (video, start + onset, end - offset, label, core_amplitude),
        (video, end - offset, end, np.full(n, OFF), config.phase_amplitude * core_amplitude),
    ]
    # Dropouts: a dip inside the core where the evidence falls to the background's level.
    has_dip = rng.random(n) < config.dropout
    dip_length = length * rng.uniform(*config.dropout_length, size=n)
    dip_start = start + onset + rng.random(n) * np.maximum(length - onset - offset - dip_length, 0.0)
    # Hard negatives outside the instances: false starts (an onset, no core) and distractors (weak class bursts).
    for count_range, kind in ((config.false_starts, "false_start"), (config.distractors, "distractor")):
        where, d_start, d_end = _free_slots(rng, layout, count_range, config, kind)
        if kind == "false_start":
            d_label = np.full(len(where), ON)
            strength = config.phase_amplitude * rng.uniform(*config.amplitude, size=len(where))
        else:
            d_label = rng.integers(0, K, size=len(where))
            strength = rng.uniform(*config.amplitude, size=len(where)) * rng.uniform(
                *config.distractor_amplitude, size=len(where))
        events.append((where, d_start, d_end, d_label, strength))

    ev_video, ev_start, ev_end, ev_proto, ev_amp = (np.concatenate(parts) for parts in zip(*events))
    ev_dip = np.zeros((len(ev_video), 2))
    ev_dip[n:2 * n] = np.where(has_dip[:, None], np.stack([dip_start, dip_start + dip_length], 1), 0.0)
    softness = np.minimum(rng.uniform(*config.ramp, size=len(ev_video)), (ev_end - ev_start) / 4 + 1e-3)
    gain = _log_uniform(rng, *config.gain, size=V)
    # Sum every event's evidence into its video's prototype row: (V * (K + 2), T).
    weights = _accumulate_events(V * (K + 2), T, ev_video * (K + 2) + ev_proto, ev_start, ev_end, softness,
                                 gain[ev_video] * ev_amp, ev_dip)
    features = torch.bmm(torch.from_numpy(video_prototypes.transpose(0, 2, 1).copy()), weights.reshape(V, K + 2, T))

    # Nuisances: per-video offset, slow drift (coarse noise interpolated to T), white noise. torch draws the
    # large tensors (several times faster than numpy), from a generator seeded by the world's rng.
    noise = torch.Generator().manual_seed(int(rng.integers(2**63)))
    features += config.offset * torch.randn(V, C, 1, generator=noise)
    knots = max(T // 16, 2)
    coarse = torch.randn(V * C, knots, generator=noise)
    features += config.drift * (coarse @ torch.from_numpy(_interpolation_matrix(knots, T))).reshape(V, C, T)
    features += config.noise * torch.randn(V, C, T, generator=noise)
    return features


def _free_slots(rng: np.random.Generator, layout, count_range, config, kind: str):
    """Hard-negative events that keep a margin of 2 snippets from every instance: ``video, start, end`` (E,)."""
    T = config.num_snippets
    low, high = count_range
    counts = rng.integers(low, high + 1, size=layout.num_videos)
    video = np.repeat(np.arange(layout.num_videos), counts)
    if kind == "false_start":  # as long as the onset of a typical instance, at least one snippet
        typical = T * config.action_fraction[0] / max(config.num_instances[0], 1.0)
        length = np.maximum(1.0, typical * rng.uniform(*config.phase, size=len(video)))
    else:
        length = rng.uniform(*config.distractor_length, size=len(video))
    length = np.minimum(length, T / 4)
    start = rng.uniform(0.0, 1.0, size=len(video)) * (T - length)
    # Each event against every instance of its video: instances padded per video to (V, M, 2).
    bounds = np.searchsorted(layout.instance_video, np.arange(layout.num_videos + 1))
    rank = np.arange(len(layout.instance_video)) - bounds[layout.instance_video]
    padded = np.full((layout.num_videos, max(int(rank.max(initial=0)) + 1, 1), 2), np.nan)
    padded[layout.instance_video, rank] = layout.instances
    own = padded[video]                                                                     # (E, M, 2)
    margin = 2.0
    clash = ((start[:, None] < own[..., 1] + margin) & (start[:, None] + length[:, None] > own[..., 0] - margin))
    keep = ~clash.any(1)
    return video[keep], start[keep], start[keep] + length[keep]


def _accumulate_events(rows: int, T: int, row: np.ndarray, start: np.ndarray, end: np.ndarray, softness: np.ndarray,
                       amplitude: np.ndarray, dip: np.ndarray) -> torch.Tensor:
    """``(rows, T)`` float32: the sum over events of ``amplitude * box(start, end) * (1 - box(dip))`` in row ``row``.

    A box is ~1 inside ``[start, end)`` with sigmoid ramps of width ``softness``. Each event is drawn only on a
    window around it (events are mostly short), windows grouped by size so each group is one tensor operation.
    """
    reach = 8 * softness + 2
    first = np.clip(np.floor(start - reach), 0, T).astype(np.int64)
    needed = np.clip(np.ceil(end + reach), 0, T).astype(np.int64) - first
    width = np.minimum(2 ** np.ceil(np.log2(np.maximum(needed, 1))).astype(np.int64), T)
    flat = torch.zeros(rows * T)
    for size in np.unique(width):
        pick = np.flatnonzero(width == size)
        position = torch.from_numpy(first[pick])[:, None] + torch.arange(int(size))             # (E_w, W)
        centre = position.to(torch.float32) + 0.5

        def column(x):
            return torch.from_numpy(np.asarray(x[pick], dtype=np.float32))[:, None]

        soft = column(softness)
        box = torch.sigmoid((centre - column(start)) / soft) * torch.sigmoid((column(end) - centre) / soft)
        dip_soft = column(np.maximum(softness, 0.3))
        has_dip = column(dip[:, 1] > dip[:, 0])
        box = box * (1 - has_dip * torch.sigmoid((centre - column(dip[:, 0])) / dip_soft)
                     * torch.sigmoid((column(dip[:, 1]) - centre) / dip_soft))
        inside = position < T
        index = (torch.from_numpy(row[pick])[:, None] * T + position)[inside]
        flat.index_add_(0, index, (column(amplitude) * box)[inside])
    return flat.reshape(rows, T)


def _interpolation_matrix(knots: int, num: int) -> np.ndarray:
    """``(knots, num)`` float32 matrix W such that ``values @ W`` linearly interpolates ``knots`` evenly spaced
    values onto ``num`` evenly spaced points (the ends coincide)."""
    pos = np.linspace(0, knots - 1, num)
    left = np.minimum(pos.astype(int), knots - 2)
    frac = pos - left
    weights = np.zeros((knots, num), dtype=np.float32)
    weights[left, np.arange(num)] = 1 - frac
    weights[left + 1, np.arange(num)] = frac
    return weights


def _log_uniform(rng: np.random.Generator, low: float, high: float, size) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), size=size))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
