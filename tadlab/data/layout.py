"""Where a synthetic video's actions are: instance counts, lengths, gaps, classes and annotations.

:func:`place_instances` draws, for every video at once, the layout that :mod:`tadlab.data.synthetic` renders into
features. The story, read off THUMOS14 and ActivityNet-1.3 (see :class:`~tadlab.data.synthetic.WorldConfig`
for the knobs and the real figures): a video shows n repetitions of its action that together cover a share c of
it; the more repetitions, the shorter each one and the shorter the pauses between them (in both benchmarks the
median instance length and the median gap fall roughly as 1/n), and the longer the video.

1. n, log-normal and heavy-tailed, at least 1, capped by ``max_instances`` and by what fits in T snippets; the duration grows with n (``duration_count_exponent``);
2. c, the video's action share: Beta-distributed; ActivityNet's single-instance videos are often nearly all
   action (``whole_video``);
3. the instances split c by Dirichlet weights (``length_concentration``: the smaller, the more their lengths
   differ); the background 1 - c is split the same way into the n - 1 gaps and the two margins before the first
   and after the last instance (``gap_concentration``, ``margin_weight``);
4. every instance gets at least ``min_length`` snippets and every gap ``min_gap`` (taken before the split);
5. classes: one per video; a share of videos with a second class (each instance then takes either);
6. annotations: every instance, plus the parent label of nested class pairs (THUMOS14 annotates every
   CliffDiving as Diving too) and a few duplicate annotations of the same class with moved boundaries.

Everything is in snippet units of a T-snippet video.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Instances (what the features show) and annotations (what the ground truth says), in snippet units.

    ``instances`` float64 ``(N, 2)`` ``[start, end)``, sorted by video then start, non-overlapping within a video;
    ``instance_video`` int64 ``(N,)`` (non-decreasing); ``label`` int64 ``(N,)``.
    ``counts`` int64 ``(V,)``: instances per video.
    ``annotations`` ``(A, 2)``, ``annotation_video`` ``(A,)`` (non-decreasing), ``annotation_label`` ``(A,)``:
    the instances plus nested-class and duplicate annotations, sorted by video, then start, then end.
    """

    num_videos: int
    counts: np.ndarray
    instances: np.ndarray
    instance_video: np.ndarray
    label: np.ndarray
    annotations: np.ndarray
    annotation_video: np.ndarray
    annotation_label: np.ndarray


def place_instances(rng: np.random.Generator, config, num_videos: int) -> Layout:
    """Draw the layout of ``num_videos`` videos for a :class:`~tadlab.data.synthetic.WorldConfig`.

    Durations are drawn after, by :func:`draw_durations`, from ``layout.counts``.
    """
    T = float(config.num_snippets)
    median, sigma = config.num_instances
    cap = min(config.max_instances, fitting_instances(config))
    counts = np.clip(np.round(median * np.exp(sigma * rng.standard_normal(num_videos))), 1, cap)
    counts = counts.astype(np.int64)
    M = int(counts.max())
    valid = np.arange(M)[None, :] < counts[:, None]                                        # (V, M)
    between = valid[:, 1:]                                                                  # (V, M - 1)

    # 2. the action share c of each video.
    mean, concentration = config.action_fraction
    coverage = rng.beta(mean * concentration, (1 - mean) * concentration, size=num_videos)
    whole = (counts == 1) & (rng.random(num_videos) < config.whole_video)
    coverage[whole] = rng.uniform(0.8, 1.0, size=int(whole.sum()))
    # 3.-4. floors first, then the rest split by Dirichlet weights (normalised gamma draws).
    free = T - config.min_length * counts - config.min_gap * (counts - 1)
    length_weights = rng.gamma(config.length_concentration, size=(num_videos, M)) * valid
    lengths = config.min_length + free[:, None] * coverage[:, None] * _normalise(length_weights)
    background = np.concatenate([rng.gamma(config.gap_concentration, size=(num_videos, max(M - 1, 0))) * between,
                                 config.margin_weight * rng.gamma(config.gap_concentration, size=(num_videos, 2))], 1)
    background = free[:, None] * (1 - coverage[:, None]) * _normalise(background)
    gaps, before = config.min_gap + background[:, :-2], background[:, -2]
    lengths, gaps = lengths * valid, gaps * between
    step = lengths + np.pad(gaps, ((0, 0), (0, 1)))
    starts = before[:, None] + np.cumsum(step, 1) - step
    ends = np.minimum(starts + lengths, T)

    # 5. classes: one per video, sometimes a second one.
    K = config.num_classes
    primary = rng.integers(0, K, size=num_videos)
    second = (primary + rng.integers(1, max(K, 2), size=num_videos)) % K
    has_second = (rng.random(num_videos) < config.second_class) & (counts >= 2)
    takes_second = (rng.random((num_videos, M)) < 0.5) & valid
    # At least one instance of each class in a two-class video: the first keeps the primary, a random other
    # instance takes the second.
    forced = rng.integers(1, np.maximum(counts, 2))
    takes_second[np.arange(num_videos), 0] = False
    takes_second[np.arange(num_videos), np.minimum(forced, M - 1)] |= M > 1
    labels = np.where(has_second[:, None] & takes_second, second[:, None], primary[:, None])

    video = np.repeat(np.arange(num_videos), counts)
    instances = np.stack([starts[valid], ends[valid]], 1)
    label = labels[valid]

    # 6. annotations: instances, nested parents (classes 2i -> 2i + 1), duplicates with moved boundaries.
    child = (label % 2 == 0) & (label < 2 * min(config.nested_classes, K // 2))
    duplicate = rng.random(len(label)) < config.duplicates
    length = instances[:, 1] - instances[:, 0]
    moved = instances[duplicate] + length[duplicate, None] * rng.uniform(-0.15, 0.15, size=(int(duplicate.sum()), 2))
    moved = np.clip(moved, 0.0, T)
    moved[:, 1] = np.maximum(moved[:, 1], moved[:, 0] + 1e-3)
    annotations = np.concatenate([instances, instances[child], moved])
    annotation_video = np.concatenate([video, video[child], video[duplicate]])
    annotation_label = np.concatenate([label, label[child] + 1, label[duplicate]])
    order = np.lexsort((annotations[:, 1], annotations[:, 0], annotation_video))
    return Layout(num_videos, counts, instances, video, label, annotations[order], annotation_video[order],
                  annotation_label[order])


def fitting_instances(config) -> int:
    """The most instances of ``min_length`` snippets, ``min_gap`` apart, that fit in ``num_snippets``."""
    return max(1, int((config.num_snippets + config.min_gap) // (config.min_length + config.min_gap)))


def draw_durations(rng: np.random.Generator, config, counts: np.ndarray) -> np.ndarray:
    """Video durations in seconds, two decimals: log-normal around ``duration``'s median scaled by
    ``(n / median n) ** duration_count_exponent`` (videos with more instances are longer), clipped."""
    median, sigma = config.duration
    scale = (counts / config.num_instances[0]) ** config.duration_count_exponent
    return np.round(np.clip(_log_normal(rng, median, sigma, len(counts)) * scale, *config.duration_range), 2)


def _normalise(weights: np.ndarray) -> np.ndarray:
    return weights / np.maximum(weights.sum(1, keepdims=True), 1e-12)


def _log_normal(rng: np.random.Generator, median: float, sigma: float, size) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(size))
