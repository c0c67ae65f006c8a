"""The synthetic TAD world: snippet features with annotated action instances, generated from a seed.

Each video is a feature sequence ``(C, T)`` (channels-first, as a real pre-extracted feature file resampled to
T snippets) with action instances ``[start, end)`` in snippet units, a class per instance and a duration in
seconds. The annotations also come out as ActivityNet JSON (seconds, two decimals, subsets "training" and
"validation"), exactly as a real dataset's ground truth, so the whole real-data path (schema, evaluation)
runs unchanged on it.

How a video's features are made (all vectorised over videos, so hundreds of videos take milliseconds):

    x[:, t] = gain * sum_i  amplitude_i * profile_i(t) * prototype_{class_i}      (action instances)
            + gain * sum_j  amplitude_j * profile_j(t) * prototype_{class_j}      (distractors, outside actions)
            + drift(t) + offset + noise * N(0, I)

* ``profile(t) = sigmoid((t + 0.5 - start) / w) * sigmoid((end - t - 0.5) / w)``: evidence ramps up and down
  softly around each boundary (half strength at the boundary itself), so a boundary is a gradient, not a step.
* prototypes are unit vectors that share a common component (classes look alike), jittered per video.
* per video: a gain, an offset vector and a slow drift (low-frequency noise), so absolute evidence levels are
  not comparable between videos; context within the video is.
* distractors: class-like bursts outside the actions, weaker and shorter than real instances, so that
  "any evidence at all" is not "an action".

A per-snippet classifier sees each snippet alone, so noise fragments its segments, distractors give false
positives and ramps blur its boundaries; a model with temporal context can recover the annotated boundaries.
The presets' noise levels were chosen so (600 videos, 30 epochs, validation subset, world seeds 0 and 1):
``tadlab.models.baseline.SnippetClassifier`` reaches an average mAP (tIoU 0.5:0.95) of about 0.16-0.21
("thumos") and 0.17 ("anet"), while a small dilated temporal CNN trained and decoded the same way reaches
0.34-0.39 and 0.61. The drift is kept small: slow drift along the class directions is the one nuisance that
context cannot average out.

    world = make_world("thumos", num_videos=200, seed=0, noise=0.3)
    world.videos[0]            # {"video_id", "features" (C, T), "segments" (N, 2), "labels" (N,), "duration"}
    world.ground_truth         # ActivityNet JSON dict
    world.dataset("training")  # torch Dataset of items
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

SUBSETS = ("training", "validation")


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of the world; a preset fills them all and ``make_world(**overrides)`` replaces some.

    Ranges are ``(low, high)`` pairs; fractions are of the video's length T.
    """

    num_snippets: int            # T, snippets per video
    feature_dim: int             # C, feature channels
    num_classes: int             # K action classes
    num_instances: tuple         # (min, max) action instances per video, integers, inclusive
    instance_length: tuple       # (min, max) instance length as a fraction of T, drawn log-uniformly
    max_coverage: float          # at most this fraction of T is action (longer draws are shrunk to fit)
    min_gap: float               # snippets of background at least between consecutive instances
    duration: tuple              # (min, max) video duration in seconds
    ramp: tuple                  # (min, max) boundary softness w in snippets (capped at a quarter of the length)
    amplitude: tuple             # (min, max) evidence strength of an instance
    noise: float                 # std of the white noise per channel and snippet
    drift: float                 # std of the slow per-video drift (low-frequency noise)
    offset: float                # std of the per-video constant offset per channel
    gain: tuple                  # (min, max) per-video gain on all evidence, drawn log-uniformly
    class_similarity: float      # weight of the component all prototypes share, in [0, 1)
    prototype_jitter: float      # per-video perturbation of the prototypes (relative to their unit norm)
    distractors: tuple           # (min, max) distractor bursts per video (those that would overlap an action drop)
    distractor_length: tuple     # (min, max) distractor length as a fraction of T
    distractor_amplitude: tuple  # (min, max) distractor strength relative to an instance's amplitude
    validation_fraction: float   # fraction of videos in the "validation" subset (the last ones)


PRESETS: dict[str, WorldConfig] = {
    # THUMOS14-like: long-ish videos with many short instances (2-16 snippets of 128).
    "thumos": WorldConfig(
        num_snippets=128, feature_dim=64, num_classes=10, num_instances=(3, 10),
        instance_length=(2 / 128, 16 / 128), max_coverage=0.7, min_gap=1.0, duration=(90.0, 300.0),
        ramp=(0.3, 1.2), amplitude=(0.8, 1.4), noise=0.17, drift=0.05, offset=0.15, gain=(0.6, 1.5),
        class_similarity=0.5, prototype_jitter=0.3, distractors=(1, 5), distractor_length=(1 / 128, 4 / 128),
        distractor_amplitude=(0.4, 0.8), validation_fraction=0.3,
    ),
    # ActivityNet-like: one to three long instances, each 10-80% of the video.
    "anet": WorldConfig(
        num_snippets=100, feature_dim=64, num_classes=10, num_instances=(1, 3),
        instance_length=(0.1, 0.8), max_coverage=0.9, min_gap=2.0, duration=(30.0, 240.0),
        ramp=(1.0, 4.0), amplitude=(0.8, 1.4), noise=0.15, drift=0.05, offset=0.15, gain=(0.6, 1.5),
        class_similarity=0.5, prototype_jitter=0.3, distractors=(1, 4), distractor_length=(0.02, 0.06),
        distractor_amplitude=(0.4, 0.8), validation_fraction=0.3,
    ),
}

_FIELDS = tuple(f.name for f in dataclasses.fields(WorldConfig))
_INT_FIELDS = {"num_snippets", "feature_dim", "num_classes"}
_INT_RANGES = {"num_instances", "distractors"}
_RANGES = {"instance_length", "duration", "ramp", "amplitude", "gain", "distractor_length",
           "distractor_amplitude"} | _INT_RANGES


class SyntheticDataset(Dataset):
    """A torch ``Dataset`` over a list of video items (see the module docstring for an item's keys)."""

    def __init__(self, items: list[dict]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


@dataclass
class SyntheticWorld:
    """A generated world: items, ActivityNet ground truth and the config that made them.

    ``videos[i]``: ``{"video_id": str, "features": float32 (C, T), "segments": float32 (N, 2) snippet units,
    "labels": int64 (N,), "duration": float seconds}``; ``subsets[i]`` is "training" or "validation".
    """

    preset: str
    seed: int
    config: WorldConfig
    class_names: list[str]
    videos: list[dict]
    subsets: list[str]
    ground_truth: dict

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def num_snippets(self) -> int:
        return self.config.num_snippets

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def video_ids(self, subset: str | None = None) -> list[str]:
        """Ids of the videos in ``subset`` ("training", "validation" or None for all), in world order."""
        return [item["video_id"] for item in self._select(subset)]

    def dataset(self, subset: str | None = None) -> SyntheticDataset:
        """A torch ``Dataset`` of the items in ``subset`` ("training", "validation" or None for all)."""
        return SyntheticDataset(self._select(subset))

    def _select(self, subset: str | None) -> list[dict]:
        if subset is not None and subset not in SUBSETS:
            raise ValueError(f"subset must be one of {list(SUBSETS)} or None, got {subset!r}")
        return [item for item, s in zip(self.videos, self.subsets) if subset is None or s == subset]


def make_world(preset: str = "thumos", num_videos: int = 200, seed: int = 0, **overrides) -> SyntheticWorld:
    """Generate ``num_videos`` videos of a preset world ("thumos" or "anet"), deterministic from ``seed``.

    ``overrides`` replace fields of the preset's :class:`WorldConfig` (e.g. ``num_snippets=64, noise=0.3``).
    The last ``round(validation_fraction * num_videos)`` videos form the "validation" subset.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if isinstance(num_videos, bool) or not isinstance(num_videos, (int, np.integer)) or num_videos < 1:
        raise ValueError(f"num_videos must be a positive int, got {num_videos!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for make_world; valid names are {list(_FIELDS)}")
    config = dataclasses.replace(PRESETS[preset], **{k: _as_field(k, v) for k, v in overrides.items()})
    _check_config(config)

    rng = np.random.default_rng(int(seed))
    num_videos = int(num_videos)
    T, K = config.num_snippets, config.num_classes
    durations = np.round(rng.uniform(*config.duration, size=num_videos), 2)
    starts, ends, classes, valid = _place_instances(rng, config, num_videos)
    # Annotations live in seconds with two decimals, as real ones do; snippet units are derived from them so
    # that the items, the features and the JSON all agree exactly.
    seconds = np.stack([starts, ends], axis=-1) * (durations / T)[:, None, None]
    seconds = np.clip(np.round(seconds, 2), 0.0, durations[:, None, None])
    seconds[..., 1] = np.maximum(seconds[..., 1], seconds[..., 0] + 0.01)  # rounding never empties an instance
    segments = np.clip(seconds * (T / durations)[:, None, None], 0.0, T)
    features = _render_features(rng, config, segments, classes, valid)

    class_names = [f"action_{k:02d}" for k in range(K)]
    num_validation = round(config.validation_fraction * num_videos)
    subsets = ["training"] * (num_videos - num_validation) + ["validation"] * num_validation
    features_t = torch.from_numpy(features)
    videos, database = [], {}
    for v in range(num_videos):
        video_id = f"{preset}_{seed}_{v:05d}"
        keep = valid[v]
        videos.append({
            "video_id": video_id,
            "features": features_t[v],
            "segments": torch.from_numpy(segments[v, keep].astype(np.float32)),
            "labels": torch.from_numpy(classes[v, keep].astype(np.int64)),
            "duration": float(durations[v]),
        })
        database[video_id] = {
            "subset": subsets[v],
            "duration": float(durations[v]),
            "annotations": [{"segment": [float(s), float(e)], "label": class_names[c]}
                            for (s, e), c in zip(seconds[v, keep].tolist(), classes[v, keep].tolist())],
        }
    ground_truth = {"version": f"tadlab synthetic {preset} seed={seed}", "database": database}
    return SyntheticWorld(preset, int(seed), config, class_names, videos, subsets, ground_truth)


def _place_instances(rng: np.random.Generator, config: WorldConfig, num_videos: int):
    """Non-overlapping instances in snippet units, sorted in time.

    Returns ``starts, ends`` float64 ``(V, M)``, ``classes`` int64 ``(V, M)`` and ``valid`` bool ``(V, M)``,
    with M the maximal instance count; invalid slots are zero.
    """
    T = config.num_snippets
    low, high = config.num_instances
    counts = rng.integers(low, high + 1, size=num_videos)
    slots = np.arange(high)
    valid = slots[None, :] < counts[:, None]
    lengths = T * _log_uniform(rng, *config.instance_length, size=(num_videos, high)) * valid
    gaps_between = config.min_gap * np.maximum(counts - 1, 0)
    # Shrink the videos whose draws do not fit, keeping the relative lengths.
    budget = config.max_coverage * T - gaps_between
    lengths *= np.minimum(1.0, budget / np.maximum(lengths.sum(1), 1e-9))[:, None]
    free = T - lengths.sum(1) - gaps_between
    # Split the free background into counts+1 random gaps (before, between and after the instances).
    weights = rng.exponential(size=(num_videos, high + 1)) * (np.arange(high + 1)[None, :] <= counts[:, None])
    gaps = free[:, None] * weights / weights.sum(1, keepdims=True)
    starts = np.cumsum(gaps[:, :-1], 1) + np.cumsum(lengths, 1) - lengths + config.min_gap * slots[None, :]
    ends = starts + lengths
    classes = rng.integers(0, config.num_classes, size=(num_videos, high))
    return starts * valid, ends * valid, classes * valid, valid


def _render_features(rng: np.random.Generator, config: WorldConfig, segments: np.ndarray, classes: np.ndarray,
                     valid: np.ndarray) -> np.ndarray:
    """Features ``(V, C, T)`` float32 for instances ``segments (V, M, 2)`` (snippet units) of ``classes (V, M)``."""
    V, M = classes.shape
    T, C, K = config.num_snippets, config.feature_dim, config.num_classes
    # Class prototypes: a shared component (classes look alike) plus a class-specific one, unit norm.
    shared = _unit(rng.standard_normal(C))
    specific = _unit(rng.standard_normal((K, C)))
    prototypes = _unit(config.class_similarity * shared + (1 - config.class_similarity) * specific)
    jitter = config.prototype_jitter / np.sqrt(C) * rng.standard_normal((V, K, C))
    video_prototypes = _unit(prototypes[None] + jitter)                                   # (V, K, C)

    # Distractors: short, weak class-like bursts; those overlapping an action (with a margin) are dropped.
    low, high = config.distractors
    num_d = rng.integers(low, high + 1, size=V)
    d_len = T * _log_uniform(rng, *config.distractor_length, size=(V, high))
    d_start = rng.uniform(0.0, 1.0, size=(V, high)) * (T - d_len)
    d_class = rng.integers(0, K, size=(V, high))
    margin = 2.0
    overlaps = ((d_start[:, :, None] < segments[:, None, :, 1] + margin)
                & (d_start[:, :, None] + d_len[:, :, None] > segments[:, None, :, 0] - margin)
                & valid[:, None, :]).any(-1)
    d_valid = (np.arange(high)[None, :] < num_d[:, None]) & ~overlaps

    # One event list per video: instances then distractors, each with a start, end, class and strength.
    ev_start = np.concatenate([segments[..., 0], d_start], 1)
    ev_end = np.concatenate([segments[..., 1], d_start + d_len], 1)
    ev_class = np.concatenate([classes, d_class], 1)
    amplitude = rng.uniform(*config.amplitude, size=(V, M + high))
    amplitude[:, M:] *= rng.uniform(*config.distractor_amplitude, size=(V, high))
    amplitude *= np.concatenate([valid, d_valid], 1)
    softness = np.minimum(rng.uniform(*config.ramp, size=(V, M + high)), (ev_end - ev_start) / 4 + 1e-3)

    centres = np.arange(T) + 0.5
    profile = (_sigmoid((centres - ev_start[..., None]) / softness[..., None])
               * _sigmoid((ev_end[..., None] - centres) / softness[..., None]))         # (V, E, T)
    event_prototypes = np.take_along_axis(video_prototypes, ev_class[..., None], axis=1)   # (V, E, C)
    gain = _log_uniform(rng, *config.gain, size=V)
    weighted = (gain[:, None] * amplitude)[..., None] * profile                            # (V, E, T)
    # torch.bmm: numpy's batched matmul of many small matrices is several times slower.
    features = torch.bmm(torch.from_numpy(event_prototypes.transpose(0, 2, 1).astype(np.float32)),
                         torch.from_numpy(weighted.astype(np.float32))).numpy()

    # Nuisances: per-video offset, slow drift (coarse noise interpolated to T), white noise.
    features += np.float32(config.offset) * rng.standard_normal((V, C, 1), dtype=np.float32)
    knots = max(T // 16, 2)
    coarse = rng.standard_normal((V, C, knots), dtype=np.float32)
    drift = (coarse.reshape(V * C, knots) @ _interpolation_matrix(knots, T)).reshape(V, C, T)
    features += np.float32(config.drift) * drift
    features += np.float32(config.noise) * rng.standard_normal((V, C, T), dtype=np.float32)
    return features


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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _as_field(name: str, value):
    """Normalise an override: ranges become tuples, so configs stay hashable and comparable."""
    if name in _RANGES:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"override {name} must be a (low, high) pair, got {value!r}")
        return tuple(value)
    return value


def _check_config(config: WorldConfig) -> None:
    """Raise ValueError/TypeError naming the field for values the generator cannot use."""
    for name in _INT_FIELDS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if config.num_snippets < 4:
        raise ValueError(f"num_snippets must be at least 4, got {config.num_snippets}")
    for name in _RANGES:
        low, high = getattr(config, name)
        numbers = (int, np.integer) if name in _INT_RANGES else (int, float, np.integer, np.floating)
        if not all(isinstance(x, numbers) and not isinstance(x, bool) for x in (low, high)):
            kind = "ints" if name in _INT_RANGES else "numbers"
            raise TypeError(f"{name} must be a (low, high) pair of {kind}, got {(low, high)!r}")
        if not (0 <= low <= high):
            raise ValueError(f"{name} must satisfy 0 <= low <= high, got {(low, high)!r}")
    for name in ("instance_length", "ramp", "duration", "gain", "distractor_length"):
        if getattr(config, name)[0] <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    if config.num_instances[0] < 1:
        raise ValueError(f"num_instances must allow at least one instance, got {config.num_instances!r}")
    if config.instance_length[1] > 1 or config.distractor_length[1] > 1:
        raise ValueError("instance_length and distractor_length are fractions of the video and must be <= 1, got "
                         f"{config.instance_length!r} and {config.distractor_length!r}")
    for name in ("noise", "drift", "offset", "prototype_jitter", "min_gap"):
        value = getattr(config, name)
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if not 0 <= config.class_similarity < 1:
        raise ValueError(f"class_similarity must be in [0, 1), got {config.class_similarity!r}")
    if not 0 <= config.validation_fraction <= 1:
        raise ValueError(f"validation_fraction must be in [0, 1], got {config.validation_fraction!r}")
    if not 0 < config.max_coverage < 1:
        raise ValueError(f"max_coverage must be in (0, 1), got {config.max_coverage!r}")
    max_gaps = config.min_gap * (config.num_instances[1] - 1)
    if max_gaps >= config.max_coverage * config.num_snippets:
        raise ValueError(f"min_gap={config.min_gap} with up to {config.num_instances[1]} instances does not fit in "
                         f"{config.max_coverage} of num_snippets={config.num_snippets}")
