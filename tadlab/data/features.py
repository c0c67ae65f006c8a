"""Real pre-extracted features: one ``.npy`` file per video, resampled to a fixed number of snippets.

A feature extractor (I3D, SlowFast, TSP, ...) slides a window of ``window`` frames along the video with a step of
``stride`` frames, on frames decoded at ``fps``. Feature i therefore covers frames ``[i * stride, i * stride +
window)`` and describes the time at the centre of that window::

    time_i = (i * stride + window / 2) / fps        seconds

The model sees every video as T snippets on a uniform grid over ``[0, duration]``: snippet t covers
``[t * duration / T, (t + 1) * duration / T)`` and sits at its centre ``(t + 0.5) * duration / T``. Resampling
interpolates each channel linearly between the two features whose centres bracket a snippet's centre
(``np.interp``); a snippet centre before the first feature's centre or after the last one takes that edge feature.

Worked example: I3D features at 25 fps with stride 16 and window 16 are 16 / 25 = 0.64 s apart, and feature i is
centred at 0.64 * i + 0.32 s (0.32, 0.96, 1.60, ...). A 10 s video (250 frames) has 15 full windows, the last
centred at 9.28 s. Resampled to T = 5 snippets, the snippet centres are 1, 3, 5, 7, 9 s:

* snippet 0 (1.0 s) lies between feature 1 (0.96 s) and feature 2 (1.60 s): ``0.9375 * f[1] + 0.0625 * f[2]``;
* snippet 4 (9.0 s) lies between feature 13 (8.64 s) and feature 14 (9.28 s): ``0.4375 * f[13] + 0.5625 * f[14]``.

The two usual mistakes: placing feature i at ``i * stride / fps`` (its window's start), which shifts every
boundary by ``window / 2 / fps`` (0.32 s here); and stretching the T_i features evenly over ``[0, duration]``,
which ignores the frames left after the last full window and breaks when features were extracted at an fps other
than the video's. ``fps`` is the rate of the frames the extractor saw, which may differ per video (pass a dict).
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from tadlab.data.collate import collate_videos
from tadlab.data.schema import (
    AnnotationWarning,
    VideoAnnotations,
    class_names_of,
    load_ground_truth,
)
from tadlab.utils import warn_at_caller


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def feature_times(num_features: int, fps: float, stride: float, window: float) -> np.ndarray:
    """Centre time in seconds of each of ``num_features`` features: ``(i * stride + window / 2) / fps``, (T_i,)."""
    if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral) or num_features < 0:
        raise ValueError(f"num_features must be a non-negative int, got {num_features!r}")
    fps, stride, window = _positive(fps, "fps"), _positive(stride, "stride"), _positive(window, "window")
    return (np.arange(num_features, dtype=np.float64) * stride + window / 2) / fps


def snippet_times(num_snippets: int, duration: float) -> np.ndarray:
    """Centre time in seconds of each of T snippets over ``[0, duration]``: ``(t + 0.5) * duration / T``, (T,)."""
    if isinstance(num_snippets, bool) or not isinstance(num_snippets, numbers.Integral) or num_snippets <= 0:
        raise ValueError(f"num_snippets must be a positive int, got {num_snippets!r}")
    return (np.arange(num_snippets, dtype=np.float64) + 0.5) * (_positive(duration, "duration") / num_snippets)


def resample_features(features: np.ndarray, num_snippets: int, duration: float, fps: float, stride: float,
                      window: float) -> np.ndarray:
    """Resample per-feature rows ``(T_i, C)`` to ``(C, T)`` float32 snippets by linear interpolation in time.

    Equivalent to ``np.interp(snippet_times, feature_times, features[:, c])`` for every channel c (edges
    clamped), done for all channels at once.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must have shape (T_i, C) with T_i >= 1, got shape {features.shape}")
    targets = snippet_times(num_snippets, duration)
    fps, stride, window = _positive(fps, "fps"), _positive(stride, "stride"), _positive(window, "window")
    count = features.shape[0]
    # Feature centres are evenly spaced, so a target's fractional feature position is a single affine map.
    position = np.clip((targets * fps - window / 2) / stride, 0.0, count - 1)
    left = np.minimum(np.floor(position).astype(np.int64), max(count - 2, 0))
    right = np.minimum(left + 1, count - 1)
    weight = (position - left)[:, None]
    rows = features[left].astype(np.float64) * (1 - weight) + features[right].astype(np.float64) * weight
    return np.ascontiguousarray(rows.T, dtype=np.float32)


def _read_shape(path: Path, video_id: str) -> tuple:
    """The array shape stored in a .npy file, read from its header without loading the data."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"video {video_id!r}: feature file {str(path)!r} is not a readable numeric .npy array "
                         f"({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise ValueError(f"video {video_id!r}: feature file {str(path)!r} holds {type(array).__name__}, "
                         f"expected a single array (T_i, C)")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"video {video_id!r}: feature file {str(path)!r} has dtype {array.dtype}, "
                         f"expected a real number dtype")
    return array.shape


class FeatureDataset(torch.utils.data.Dataset):
    """Videos of an ActivityNet-style ground truth with their pre-extracted features ``feature_dir/VIDEO_ID.npy``.

    Each item is ``{"video_id", "features": float32 (C, T), "segments": float32 (N, 2) snippet units,
    "labels": int64 (N,), "duration": float seconds}`` with T = ``num_snippets``. Segments are clipped to the video
    (``[0, duration]``: real files hold annotations that end, or even start, past the stated duration) and become
    snippet units by ``seconds * T / duration``; labels become indices into ``class_names`` (default: the sorted
    labels of the whole ground truth, so every subset shares the same indices). Segments of zero length after
    clipping are dropped; one warning counts what was clipped and dropped (a training target needs
    ``0 <= start < end <= T``; evaluation reads the ground truth itself and scores the raw times).

    Construction checks every expected file (existence, shape and channel count, from the .npy header) and reports
    all missing files in one error; one warning counts the videos whose features end far from the video's end
    (less than half or more than 1.5 times its duration: fps, stride or window are likely wrong). Feature files without a ground-truth entry are ignored. A video id must be a plain
    file name (no folder separator, not "." or ".."), so that no id reads a file outside ``feature_dir``.
    ``fps`` is one number or a dict video id -> fps; ``stride`` and ``window`` are in frames (see module docstring).
    """

    def __init__(self, feature_dir, ground_truth, *, subset: str | None = None, num_snippets: int = 100,
                 fps: float | Mapping[str, float], stride: float, window: float,
                 class_names: Sequence[str] | None = None, feature_dim: int | None = None):
        self.feature_dir = Path(feature_dir)
        if not self.feature_dir.is_dir():
            raise ValueError(f"feature_dir {str(feature_dir)!r} is not a directory")
        videos = ground_truth if _is_loaded(ground_truth) else load_ground_truth(ground_truth)
        self.class_names = list(class_names) if class_names is not None else class_names_of(videos)
        if subset is not None:
            available = sorted({video.subset for video in videos.values()})
            videos = {key: video for key, video in videos.items() if video.subset == subset}
            if not videos:
                raise ValueError(f"subset {subset!r} has no videos in the ground truth; subsets present: {available}")
        if isinstance(num_snippets, bool) or not isinstance(num_snippets, numbers.Integral) or num_snippets <= 0:
            raise ValueError(f"num_snippets must be a positive int, got {num_snippets!r}")
        self.num_snippets = int(num_snippets)
        self.stride, self.window = _positive(stride, "stride"), _positive(window, "window")
        self.fps = self._fps_per_video(fps, videos)
        self.videos = videos
        self.video_ids = list(videos)
        _check_file_names(self.video_ids)
        self.paths = {video_id: self.feature_dir / f"{video_id}.npy" for video_id in self.video_ids}
        self._check_files_exist()
        self.feature_dim = self._check_shapes(feature_dim)
        self._segments, self._labels = self._targets()

    def _fps_per_video(self, fps, videos) -> dict[str, float]:
        if not isinstance(fps, Mapping):
            value = _positive(fps, "fps")
            return {video_id: value for video_id in videos}
        missing = [video_id for video_id in videos if video_id not in fps]
        if missing:
            raise ValueError(f"fps: {len(missing)} video(s) have no fps in the dict, e.g. {missing[:5]}")
        return {video_id: _positive(fps[video_id], f"fps[{video_id!r}]") for video_id in videos}

    def _check_files_exist(self) -> None:
        missing = [video_id for video_id in self.video_ids if not self.paths[video_id].is_file()]
        if not missing:
            return
        message = (f"{len(missing)} of {len(self.video_ids)} feature files are missing from "
                   f"{str(self.feature_dir)!r}, e.g. {[f'{v}.npy' for v in missing[:5]]}")
        # ActivityNet ids are written with and without the "v_" prefix by different tools.
        if any((self.feature_dir / f"v_{video_id}.npy").is_file() for video_id in missing[:20]):
            message += "; files named 'v_<video id>.npy' exist: rename them or strip the prefix in the ground truth"
        raise FileNotFoundError(message)

    def _check_shapes(self, feature_dim) -> int:
        if feature_dim is not None and (isinstance(feature_dim, bool) or not isinstance(feature_dim, numbers.Integral)
                                        or feature_dim <= 0):
            raise ValueError(f"feature_dim must be a positive int or None, got {feature_dim!r}")
        expected, source, counts = feature_dim, "feature_dim", {}
        for video_id in self.video_ids:
            path = self.paths[video_id]
            shape = _read_shape(path, video_id)
            counts[video_id] = shape[0] if shape else 0
            if len(shape) != 2 or shape[0] == 0 or (expected is not None and shape[1] != expected):
                want = "(T_i >= 1, C)" if expected is None else f"(T_i >= 1, C = {expected}, from {source})"
                raise ValueError(f"video {video_id!r}: feature file {str(path)!r} has shape {shape}, expected {want}")
            if expected is None:
                expected, source = shape[1], f"the first file, video {video_id!r}"
        if expected is None:
            raise ValueError("the ground truth selects no videos, so there are no features to read")
        self._check_time_span(counts)
        return expected

    def _check_time_span(self, counts: dict) -> None:
        """One warning when features end far from their video's end: a wrong fps, stride or window (the usual
        mistakes with real features) stretches or squeezes every boundary without any other error."""
        far = []
        for video_id, count in counts.items():
            end = ((count - 1) * self.stride + self.window) / self.fps[video_id]  # the last window's end, seconds
            ratio = end / self.videos[video_id].duration
            if not 0.5 <= ratio <= 1.5:
                far.append((video_id, count, end))
        if far:
            video_id, count, end = far[0]
            warn_at_caller(f"features: in {len(far)} of {len(counts)} video(s) the features end far from the video's "
                           f"end (e.g. video {video_id!r}: {count} features at fps {self.fps[video_id]:g}, stride "
                           f"{self.stride:g}, window {self.window:g} end at {end:.3g} s, the video lasts "
                           f"{self.videos[video_id].duration:.3g} s); check fps, stride and window: they must describe "
                           f"the frames the extractor saw (see tadlab.data.features)", UserWarning)

    def _targets(self):
        index = {name: i for i, name in enumerate(self.class_names)}
        segments, labels, clipped, dropped = {}, {}, 0, 0
        for video_id, video in self.videos.items():
            unknown = [label for label in video.labels if label not in index]
            if unknown:
                raise ValueError(f"video {video_id!r}, field 'label': {unknown[0]!r} is not in class_names "
                                 f"({len(self.class_names)} classes, e.g. {self.class_names[:5]})")
            inside = video.clipped().segments
            clipped += int((inside != video.segments).any(axis=1).sum())
            keep = inside[:, 1] > inside[:, 0]
            dropped += int((~keep).sum())
            scale = self.num_snippets / video.duration
            segments[video_id] = torch.tensor(inside[keep] * scale, dtype=torch.float32).reshape(-1, 2)
            labels[video_id] = torch.tensor([index[label] for label, k in zip(video.labels, keep) if k],
                                            dtype=torch.int64)
        if clipped or dropped:
            warn_at_caller(f"training targets: clipped {clipped} ground-truth segment(s) to their video's "
                           f"[0, duration] and dropped {dropped} zero-length segment(s) (start == end after "
                           f"clipping)", AnnotationWarning)
        return segments, labels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict:
        video_id = self.video_ids[index]
        video, path = self.videos[video_id], self.paths[video_id]
        rows = np.load(path, allow_pickle=False)
        if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != self.feature_dim:
            raise ValueError(f"video {video_id!r}: feature file {str(path)!r} has shape {rows.shape}, "
                             f"expected (T_i >= 1, C = {self.feature_dim}) (did it change after the dataset was made?)")
        if not np.isfinite(rows).all():
            raise ValueError(f"video {video_id!r}: feature file {str(path)!r} holds NaN or infinite values")
        features = resample_features(rows, self.num_snippets, video.duration, self.fps[video_id], self.stride,
                                     self.window)
        return {
            "video_id": video_id,
            "features": torch.from_numpy(features),
            "segments": self._segments[video_id].clone(),
            "labels": self._labels[video_id].clone(),
            "duration": video.duration,
        }


def _check_file_names(video_ids) -> None:
    """Every id must name a file inside the feature folder: no separator, not "." or "..", no NUL byte."""
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    bad = [video_id for video_id in video_ids
           if video_id in ("", ".", "..") or "\0" in video_id or any(sep in video_id for sep in separators)]
    if bad:
        raise ValueError(f"{len(bad)} video id(s) are not plain file names, e.g. {bad[:3]}; features are read from "
                         f"feature_dir/<video id>.npy, and an id with a folder separator or '..' would read a file "
                         f"outside feature_dir: rename the videos in the ground truth")


def _is_loaded(ground_truth) -> bool:
    return isinstance(ground_truth, Mapping) and "database" not in ground_truth and all(
        isinstance(video, VideoAnnotations) for video in ground_truth.values())


__all__ = ["feature_times", "snippet_times", "resample_features", "FeatureDataset", "collate_videos"]
