"""The synthetic TAD world: snippet features with annotated action instances, generated from a seed.

Each video is a feature sequence ``(C, T)`` (channels-first, as a real pre-extracted feature file resampled to
T snippets) with action instances ``[start, end)`` in snippet units, a class per instance and a duration in
seconds. The annotations also come out as ActivityNet JSON (seconds, two decimals, subsets "training",
"validation" and "testing"), so the whole real-data path (schema, evaluation) runs unchanged on it.

The two presets model the statistics that make THUMOS14 and ActivityNet-1.3 hard (measured on their public
annotation files by :func:`tadlab.data.statistics.dataset_statistics`; ``results/real_benchmarks.json``), one
:class:`WorldConfig` knob per property, and nothing chosen to make a particular detector win:

* **where the instances are** (:mod:`tadlab.data.layout`): one class per video (THUMOS14: 84-87 % of videos;
  ActivityNet: 99.9 %), a few videos with a second class and, in THUMOS14, one class always annotated twice
  (CliffDiving is also Diving); heavy-tailed instance counts; repetitions of the same action separated by short
  gaps; instance lengths from a few snippets to the whole video; duplicate (overlapping) annotations.
* **what a snippet shows** (below): instances are not uniform. Each has an onset, a core and an offset; onset
  and offset look alike across classes (getting ready, walking away), only the core tells the class. Some
  instances have a dropout (an occlusion, a cut, a pause) where the evidence falls to the background's level.
  Outside the instances there are hard negatives: onsets without a core (false starts) and weak class-like
  bursts (distractors).

How a video's features are made (vectorised over all events of all videos, so 1,000 videos take a fraction of a
second)::

    x[:, t] = gain * sum_events amplitude_e * profile_e(t) * prototype_e  +  drift(t) + offset + noise * N(0, I)

* ``profile(t) = sigmoid((t + 0.5 - start) / w) * sigmoid((end - t - 0.5) / w)`` (times a dip for a dropout):
  evidence ramps up and down softly around each boundary (half strength at the boundary itself).
* events: an instance's onset, core and offset (prototypes ON, class, OFF), false starts (ON), distractors
  (a class prototype, weaker and shorter). Class prototypes are unit vectors sharing a common component (classes
  look alike) and are jittered per video; ON and OFF are shared by all classes.
* per video: a gain, an offset vector and a slow drift (low-frequency noise), so absolute evidence levels are
  not comparable between videos; context within the video is.

    world = make_world("thumos", num_videos=300, seed=0)
    world.videos[0]            # {"video_id", "features" (C, T), "segments" (N, 2), "labels" (N,), "duration"}
    world.ground_truth         # ActivityNet JSON dict
    world.dataset("testing")   # torch Dataset of items
    world.statistics()         # the properties above, as for a real benchmark
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from tadlab.data.layout import draw_durations, place_instances
from tadlab.data.rendering import render_features

SUBSETS = ("training", "validation", "testing")


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of the world; a preset fills them all and ``make_world(**overrides)`` replaces some.

    Ranges are ``(low, high)`` pairs; "log-normal (median, sigma)" pairs give the median and the standard
    deviation of the logarithm. Fractions of the video are of its length T (or of its duration: the same).
    The real figures quoted are THUMOS14 validation/test and ActivityNet-1.3 training/validation.
    """

    num_snippets: int            # T, snippets per video
    feature_dim: int             # C, feature channels
    num_classes: int             # K action classes
    # -- where the instances are (tadlab.data.layout) ------------------------------------------------------------
    num_instances: tuple         # log-normal (median, sigma) of instances per video, rounded, at least 1.
    #                              THUMOS14: mean 15, median 8-9; ActivityNet: 75 % one, 13 % two, 8 % 3-4, 3 % 5-8
    max_instances: int           # cap on instances per video (THUMOS14 reaches 128-218); also capped by what fits
    #                              in T snippets with min_length and min_gap
    action_fraction: tuple       # Beta (mean, concentration) of the share of a video that is action
    #                              (THUMOS14: 0.29; ActivityNet: 0.65, 0.71 in single-instance videos)
    whole_video: float           # share of single-instance videos whose instance covers 0.8-1.0 of the video
    #                              (ActivityNet: 24 % of instances cover more than 0.8; half the single ones)
    length_concentration: float  # Dirichlet concentration splitting the action share among the instances: smaller
    #                              is more varied (THUMOS14: median length 1 % of the video, mean 2 %)
    gap_concentration: float     # the same for the background between instances (THUMOS14 same-class gaps: median
    #                              3.2 s, 21-24 % under 1 s; ActivityNet: median 8.8 s)
    margin_weight: float         # weight of the background before the first and after the last instance, relative to
    #                              a gap between two instances
    min_length: float            # snippets an instance covers at least (compresses THUMOS14's shortest instances)
    min_gap: float               # snippets of background at least between consecutive instances
    second_class: float          # share of videos with a second class (THUMOS14: CricketBowling with CricketShot)
    nested_classes: int          # (child, parent) class pairs (2i, 2i + 1), at most K // 2: every child instance is
    #                              also annotated as the parent (THUMOS14: every CliffDiving is also a Diving, 17 %
    #                              of its instances overlap another; two pairs stand in for its one frequent pair;
    #                              ActivityNet: none)
    duplicates: float            # share of instances annotated a second time, same class, boundaries moved
    #                              (ActivityNet: 2.2-2.5 % of instances overlap another, 94-97 % of them same class)
    duration: tuple              # log-normal (median, sigma) of the video duration in seconds at the median count
    duration_count_exponent: float  # duration grows as count ** this (THUMOS14: ~70 s with one instance, ~330 s
    #                              with more than 32; ActivityNet: 105 s to 220 s)
    duration_range: tuple        # (min, max) seconds the duration is clipped to
    # -- what a snippet shows ----------------------------------------------------------------------------------
    ramp: tuple                  # (min, max) boundary softness w in snippets (capped at a quarter of the event)
    amplitude: tuple             # (min, max) evidence strength of an instance's core
    phase: tuple                 # (min, max) share of an instance taken by its onset, and again by its offset
    phase_amplitude: float       # strength of onset and offset relative to the core
    dropout: float               # probability that an instance has one dropout (evidence falls to background)
    dropout_length: tuple        # (min, max) dropout length as a fraction of its instance
    false_starts: tuple          # (min, max) onsets without a core per video, outside the instances
    distractors: tuple           # (min, max) weak class-like bursts per video, outside the instances
    distractor_length: tuple     # (min, max) distractor length in snippets
    distractor_amplitude: tuple  # (min, max) distractor strength relative to an instance's amplitude
    noise: float                 # std of the white noise per channel and snippet
    drift: float                 # std of the slow per-video drift (low-frequency noise)
    offset: float                # std of the per-video constant offset per channel
    gain: tuple                  # (min, max) per-video gain on all evidence, drawn log-uniformly
    class_similarity: float      # weight of the component all class prototypes share, in [0, 1)
    prototype_jitter: float      # per-video perturbation of the prototypes (relative to their unit norm)
    # -- splits ------------------------------------------------------------------------------------------------
    validation_fraction: float   # share of videos in "validation" (choose recipes there)
    testing_fraction: float      # share of videos in "testing" (report there); the last videos of the world


PRESETS: dict[str, WorldConfig] = {
    # THUMOS14-like: ~210 s videos, many short repeated instances of one class, ~30 % of the video is action.
    # T = 256 snippets (0.8 s each in a 210 s video): the shortest real instances are lengthened to 2 snippets
    # and the shortest gaps to 1, so every instance can still be told apart at snippet resolution.
    "thumos": WorldConfig(
        num_snippets=256, feature_dim=64, num_classes=20,
        num_instances=(8.5, 1.1), max_instances=48, action_fraction=(0.22, 6.0), whole_video=0.0,
        length_concentration=2.0, gap_concentration=0.35, margin_weight=3.0, min_length=2.0, min_gap=1.0,
        second_class=0.10, nested_classes=2, duplicates=0.002, duration=(180.0, 0.5), duration_count_exponent=0.35,
        duration_range=(20.0, 1200.0),
        ramp=(0.3, 1.0), amplitude=(0.8, 1.4), phase=(0.1, 0.25), phase_amplitude=0.8, dropout=0.1,
        dropout_length=(0.15, 0.35), false_starts=(1, 6), distractors=(1, 6), distractor_length=(1.0, 4.0),
        distractor_amplitude=(0.4, 0.8), noise=0.17, drift=0.05, offset=0.15, gain=(0.6, 1.5),
        class_similarity=0.5, prototype_jitter=0.3, validation_fraction=0.2, testing_fraction=0.2,
    ),
    # ActivityNet-like: ~120 s videos, mostly one long instance (often nearly the whole video), one class each.
    "anet": WorldConfig(
        num_snippets=100, feature_dim=64, num_classes=20,
        num_instances=(0.76, 1.0), max_instances=16, action_fraction=(0.5, 3.0), whole_video=0.5,
        length_concentration=1.0, gap_concentration=1.0, margin_weight=1.0, min_length=1.0, min_gap=1.0,
        second_class=0.002, nested_classes=0, duplicates=0.0125, duration=(92.0, 0.55), duration_count_exponent=0.25,
        duration_range=(10.0, 600.0),
        ramp=(1.0, 4.0), amplitude=(0.8, 1.4), phase=(0.05, 0.15), phase_amplitude=0.8, dropout=0.5,
        dropout_length=(0.05, 0.2), false_starts=(0, 2), distractors=(1, 4), distractor_length=(2.0, 6.0),
        distractor_amplitude=(0.4, 0.8), noise=0.15, drift=0.05, offset=0.15, gain=(0.6, 1.5),
        class_similarity=0.5, prototype_jitter=0.3, validation_fraction=0.2, testing_fraction=0.2,
    ),
}

_FIELDS = tuple(f.name for f in dataclasses.fields(WorldConfig))
_INT_FIELDS = {"num_snippets", "feature_dim", "num_classes", "max_instances"}
_INT_RANGES = {"false_starts", "distractors"}
_LOG_NORMALS = {"num_instances", "duration"}
_PAIRS = {"action_fraction"}
_RANGES = {"duration_range", "ramp", "amplitude", "phase", "dropout_length", "distractor_length",
           "distractor_amplitude", "gain"} | _INT_RANGES
_SHARES = {"whole_video", "second_class", "duplicates", "dropout"}
_POSITIVE = {"length_concentration", "gap_concentration"}
_NON_NEGATIVE = {"min_length", "min_gap", "margin_weight", "duration_count_exponent", "noise", "drift", "offset", "prototype_jitter", "phase_amplitude"}


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
    "labels": int64 (N,), "duration": float seconds}``; ``subsets[i]`` is "training", "validation" or "testing".
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
        """Ids of the videos in ``subset`` ("training", "validation", "testing" or None for all), in world order."""
        return [item["video_id"] for item in self._select(subset)]

    def dataset(self, subset: str | None = None) -> SyntheticDataset:
        """A torch ``Dataset`` of the items in ``subset`` ("training", "validation", "testing" or None for all)."""
        return SyntheticDataset(self._select(subset))

    def statistics(self, subset: str | None = None) -> dict:
        """:func:`tadlab.data.statistics.dataset_statistics` of this world's ground truth (in ``subset``)."""
        from tadlab.data.statistics import dataset_statistics

        return dataset_statistics(self.ground_truth, subset)

    def _select(self, subset: str | None) -> list[dict]:
        if subset is not None and subset not in SUBSETS:
            raise ValueError(f"subset must be one of {list(SUBSETS)} or None, got {subset!r}")
        return [item for item, s in zip(self.videos, self.subsets) if subset is None or s == subset]


def make_world(preset: str = "thumos", num_videos: int = 200, seed: int = 0, **overrides) -> SyntheticWorld:
    """Generate ``num_videos`` videos of a preset world ("thumos" or "anet"), deterministic from ``seed``.

    ``overrides`` replace fields of the preset's :class:`WorldConfig` (e.g. ``num_snippets=64, noise=0.3``).
    The last ``round(testing_fraction * num_videos)`` videos form "testing", the ``round(validation_fraction *
    num_videos)`` before them "validation", the rest "training".
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
    layout = place_instances(rng, config, num_videos)
    durations = draw_durations(rng, config, layout.counts)
    features = render_features(rng, config, layout)                                        # (V, C, T)

    # Annotations live in seconds with two decimals, as real ones do; snippet units are derived from them so
    # that the items and the JSON agree exactly (the features were rendered at the unrounded times).
    scale = durations[layout.annotation_video] / T
    seconds = np.round(layout.annotations * scale[:, None], 2)
    seconds[:, 1] = np.maximum(seconds[:, 1], seconds[:, 0] + 0.01)  # rounding never empties an instance
    seconds = np.minimum(seconds, durations[layout.annotation_video][:, None])
    segments = (seconds / scale[:, None]).astype(np.float32)

    class_names = [f"action_{k:02d}" for k in range(K)]
    num_testing = round(config.testing_fraction * num_videos)
    num_validation = round(config.validation_fraction * num_videos)
    num_training = num_videos - num_validation - num_testing
    subsets = ["training"] * num_training + ["validation"] * num_validation + ["testing"] * num_testing
    bounds = np.searchsorted(layout.annotation_video, np.arange(num_videos + 1))
    videos, database = [], {}
    for v in range(num_videos):
        video_id = f"{preset}_{seed}_{v:05d}"
        own = slice(bounds[v], bounds[v + 1])
        labels = layout.annotation_label[own]
        videos.append({
            "video_id": video_id,
            "features": features[v],
            "segments": torch.from_numpy(segments[own]),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "duration": float(durations[v]),
        })
        database[video_id] = {
            "subset": subsets[v],
            "duration": float(durations[v]),
            "annotations": [{"segment": [float(s), float(e)], "label": class_names[c]}
                            for (s, e), c in zip(seconds[own].tolist(), labels.tolist())],
        }
    ground_truth = {"version": f"tadlab synthetic {preset} seed={seed}", "database": database}
    return SyntheticWorld(preset, int(seed), config, class_names, videos, subsets, ground_truth)


def _as_field(name: str, value):
    """Normalise an override: pairs become tuples, so configs stay hashable and comparable."""
    if name in _RANGES or name in _LOG_NORMALS or name in _PAIRS:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"override {name} must be a pair, got {value!r}")
        return tuple(value)
    return value


def _is_number(value, integral: bool = False) -> bool:
    kinds = (int, np.integer) if integral else (int, float, np.integer, np.floating)
    return isinstance(value, kinds) and not isinstance(value, bool)


def _check_config(config: WorldConfig) -> None:
    """Raise ValueError/TypeError naming the field for values the generator cannot use."""
    for name in _INT_FIELDS:
        value = getattr(config, name)
        if not _is_number(value, integral=True) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if config.num_snippets < 8:
        raise ValueError(f"num_snippets must be at least 8, got {config.num_snippets}")
    for name in _RANGES:
        low, high = getattr(config, name)
        if not all(_is_number(x, integral=name in _INT_RANGES) for x in (low, high)):
            kind = "ints" if name in _INT_RANGES else "numbers"
            raise TypeError(f"{name} must be a (low, high) pair of {kind}, got {(low, high)!r}")
        if not 0 <= low <= high:
            raise ValueError(f"{name} must satisfy 0 <= low <= high, got {(low, high)!r}")
    for name in _LOG_NORMALS:
        median, sigma = getattr(config, name)
        if not (_is_number(median) and _is_number(sigma)) or not median > 0 or sigma < 0:
            raise ValueError(f"{name} must be a log-normal (median > 0, sigma >= 0) pair, got {(median, sigma)!r}")
    for name in ("ramp", "duration_range", "gain", "distractor_length"):
        if getattr(config, name)[0] <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    if config.phase[1] >= 0.5:  # onset and offset together must leave a core
        raise ValueError(f"phase must stay below 0.5 of an instance, got {config.phase!r}")
    if config.dropout_length[1] > 1:
        raise ValueError(f"dropout_length must be at most 1 (the whole instance), got {config.dropout_length!r}")
    for name in _SHARES:
        value = getattr(config, name)
        if not _is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a share in [0, 1], got {value!r}")
    for name in _NON_NEGATIVE:
        value = getattr(config, name)
        if not _is_number(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    for name in _POSITIVE:
        value = getattr(config, name)
        if not _is_number(value) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    mean, concentration = config.action_fraction
    if not (_is_number(mean) and _is_number(concentration)) or not 0 < mean < 1 or not concentration > 0:
        raise ValueError(f"action_fraction must be a Beta (mean in (0, 1), concentration > 0) pair, got "
                         f"{config.action_fraction!r}")
    if not _is_number(config.nested_classes, integral=True) or config.nested_classes < 0:
        raise ValueError(f"nested_classes must be a non-negative int, got {config.nested_classes!r}")
    if config.second_class > 0 and config.num_classes < 2:
        raise ValueError("second_class > 0 needs num_classes >= 2")
    if not _is_number(config.class_similarity) or not 0 <= config.class_similarity < 1:
        raise ValueError(f"class_similarity must be in [0, 1), got {config.class_similarity!r}")
    for name in ("validation_fraction", "testing_fraction"):
        value = getattr(config, name)
        if not _is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if config.validation_fraction + config.testing_fraction > 1:
        raise ValueError(f"validation_fraction + testing_fraction must be <= 1, got {config.validation_fraction} + "
                         f"{config.testing_fraction}")
    if config.min_length > config.num_snippets:
        raise ValueError(f"min_length={config.min_length} is longer than num_snippets={config.num_snippets}")
