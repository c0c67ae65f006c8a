"""The baselines every detector is compared with: per-snippet classifiers and the decoders a class map gives.

Two models, one loss, two decoders, so that a comparison changes one thing at a time:

- :class:`SnippetClassifier` (the naive baseline of notebook 01) looks at one snippet at a time (1x1
  convolutions, i.e. a small MLP shared over time): no temporal context at all.
- :class:`TemporalContextClassifier` adds temporal context: a small dilated temporal CNN (residual dilated
  convolutions, dilations 1, 2, 4, 8, 16: a receptive field of 63 snippets) over per-video centred features.

Both are trained with cross-entropy on centre-rule snippet labels (background = class K) and decode either way:

- ``decoder="runs"`` (naive): threshold the foreground probability once, group consecutive foreground snippets
  of the same arg-max class into segments, score each by its mean class probability.
- ``decoder="class_map"``: class-map grouping (:func:`tadlab.grouping.group_class_map`): every class curve
  thresholded at nine levels, every run a candidate.

Class-aware Soft-NMS then removes duplicates. Every later detector should beat these three rows: naive
(SnippetClassifier, runs), context (TemporalContextClassifier, runs) and class-map grouping
(TemporalContextClassifier, class_map).
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from tadlab.grouping import DEFAULT_THRESHOLDS, group_class_map
from tadlab.labels import snippet_labels
from tadlab.models.blocks import DilatedCNNEmbedding
from tadlab.segments import batched_soft_nms
from tadlab.utils import check_choice


def _check_int(name: str, value, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")


class PerSnippetDetector(nn.Module):
    """Shared by the baselines: ``forward`` gives (K+1)-way logits per snippet; loss and decoding live here.

    Subclasses set ``feature_dim``, ``num_classes``, ``center_features`` and implement ``classify(features)``.
    """

    feature_dim: int
    num_classes: int
    center_features: bool = False

    def classify(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> dict:
        """features (B, C, T) -> {"logits": (B, K+1, T)}."""
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or features.shape[1] != self.feature_dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must have shape (B, C={self.feature_dim}, T), got {shape}")
        if self.center_features:  # remove each video's per-channel offset (a video-level context)
            features = features - features.mean(dim=2, keepdim=True)
        return {"logits": self.classify(features)}

    def loss(self, outputs: dict, batch: dict) -> dict:
        """Cross-entropy against centre-rule snippet labels built from ``batch["segments"]`` and ``batch["labels"]``.

        Returns {"total", "ce"} (equal: the baseline has one term).
        """
        logits = outputs["logits"]
        targets = snippet_labels(batch["segments"], batch["labels"], logits.shape[-1], self.num_classes)
        ce = F.cross_entropy(logits, targets.to(logits.device), ignore_index=-1)
        return {"total": ce, "ce": ce}

    @torch.no_grad()
    def detect(self, outputs: dict, decoder: str = "runs", threshold: float = 0.5, thresholds=DEFAULT_THRESHOLDS,
               nms_method: str = "gaussian", sigma: float = 0.5, iou_threshold: float = 0.5,
               min_score: float = 1e-3, top_k: int | None = 100) -> list[dict]:
        """Segments from the snippet probabilities of ``outputs["logits"]`` (B, K+1, T), then class-aware Soft-NMS.

        ``decoder="runs"``: a snippet is foreground when 1 - p(background) >= ``threshold``; consecutive
        foreground snippets with the same arg-max action class form a segment ``[first, last + 1)`` in snippet
        units, scored by the mean probability of that class over the segment.
        ``decoder="class_map"``: :func:`tadlab.grouping.group_class_map` at ``thresholds``.
        Returns one dict per video with "segments" (M, 2), "scores" (M,) and "labels" (M,) int64, after Soft-NMS
        (``nms_method``, ``sigma``, ``iou_threshold``, ``min_score``, ``top_k`` as in
        :func:`tadlab.segments.batched_soft_nms`).
        """
        check_choice("decoder", decoder, {"runs", "class_map"})
        logits = outputs["logits"]
        if logits.dim() != 3 or logits.shape[1] != self.num_classes + 1:
            raise ValueError(f"outputs['logits'] must have shape (B, K+1={self.num_classes + 1}, T), "
                             f"got {tuple(logits.shape)}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        probs = logits.float().softmax(dim=1)
        nms = {"method": nms_method, "sigma": sigma, "iou_threshold": iou_threshold, "min_score": min_score}
        if decoder == "class_map":
            return group_class_map(probs, thresholds, top_k=top_k, nms=nms)
        return _decode_runs(probs, threshold, nms, top_k)


def _decode_runs(probs: torch.Tensor, threshold: float, nms: dict, top_k: int | None) -> list[dict]:
    """The naive decoder: one threshold on the foreground probability, runs of one arg-max class (see detect)."""
    batch, _, length = probs.shape
    class_prob, class_index = probs[:, :-1].max(dim=1)                                    # (B, T)
    foreground = (1 - probs[:, -1]) >= threshold
    # Runs of equal keys; a -1 column after every video keeps runs from crossing video borders.
    key = torch.where(foreground, class_index, torch.full_like(class_index, -1))
    key = torch.cat([key, key.new_full((batch, 1), -1)], dim=1).flatten()
    starts_run = torch.ones_like(key, dtype=torch.bool)
    starts_run[1:] = key[1:] != key[:-1]
    run_id = torch.cumsum(starts_run.long(), 0) - 1
    num_runs = int(run_id[-1]) + 1
    position = torch.arange(length + 1, device=key.device).repeat(batch)
    video = torch.arange(batch, device=key.device).repeat_interleave(length + 1)
    first = torch.full((num_runs,), length + 1, dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, run_id, position, reduce="amin")
    last = torch.zeros(num_runs, dtype=torch.long, device=key.device).scatter_reduce(0, run_id, position, "amax")
    prob = torch.cat([class_prob, class_prob.new_zeros(batch, 1)], dim=1).flatten()
    score = prob.new_zeros(num_runs).index_add(0, run_id, prob) / (last - first + 1).to(prob.dtype)
    run_key = key[starts_run]
    run_video = video[starts_run]
    is_action = run_key >= 0

    detections = []
    for b in range(batch):
        keep = is_action & (run_video == b)
        segments = torch.stack([first[keep], last[keep] + 1], dim=1).to(probs.dtype)
        segments, scores, labels, _ = batched_soft_nms(segments, score[keep], run_key[keep], top_k=top_k, **nms)
        detections.append({"segments": segments, "scores": scores, "labels": labels.long()})
    return detections


class SnippetClassifier(PerSnippetDetector):
    """The naive baseline: a per-snippet (K+1)-way classifier with no temporal context; background is index K.

    Args:
        feature_dim: C, channels of the input features.
        num_classes: K action classes.
        hidden_dim: width of the hidden 1x1 layer; ``None`` gives a linear classifier (one 1x1 conv).
        dropout: dropout after the hidden layer.
        center_features: subtract each video's per-channel mean over time first (off: the naive baseline sees each
            snippet alone).
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden_dim: int | None = 128, dropout: float = 0.1,
                 center_features: bool = False):
        super().__init__()
        _check_int("feature_dim", feature_dim)
        _check_int("num_classes", num_classes)
        _check_int("hidden_dim", hidden_dim, allow_none=True)
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        feature_dim, num_classes = int(feature_dim), int(num_classes)
        self.feature_dim, self.num_classes, self.center_features = feature_dim, num_classes, bool(center_features)
        if hidden_dim is None:
            self.classifier = nn.Conv1d(feature_dim, num_classes + 1, kernel_size=1)
        else:
            self.classifier = nn.Sequential(
                nn.Conv1d(feature_dim, int(hidden_dim), kernel_size=1), nn.ReLU(), nn.Dropout(dropout),
                nn.Conv1d(int(hidden_dim), num_classes + 1, kernel_size=1),
            )

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


class TemporalContextClassifier(PerSnippetDetector):
    """The context baseline: a per-snippet (K+1)-way classifier that sees its neighbours.

    ``features (B, C, T) -> centre over time -> 1x1 projection to hidden_dim -> residual dilated convolutions
    (kernel 3, one layer per dilation) -> 1x1 classifier -> logits (B, K+1, T)``. With the default dilations
    (1, 2, 4, 8, 16) each snippet sees 1 + 2 * 31 = 63 snippets around it.

    Args:
        feature_dim: C. num_classes: K. hidden_dim: width of the temporal layers.
        dilations: one residual dilated layer per entry.
        dropout: dropout inside the residual layers.
        center_features: subtract each video's per-channel mean over time first (default on).
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden_dim: int = 64, dilations=(1, 2, 4, 8, 16),
                 dropout: float = 0.1, center_features: bool = True):
        super().__init__()
        _check_int("feature_dim", feature_dim)
        _check_int("num_classes", num_classes)
        _check_int("hidden_dim", hidden_dim)
        dilations = tuple(dilations)
        if not dilations or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1
                                    for d in dilations):
            raise ValueError(f"dilations must be a non-empty sequence of positive ints, got {dilations!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.feature_dim, self.num_classes, self.center_features = int(feature_dim), int(num_classes), bool(
            center_features)
        self.dilations = dilations
        self.projection = nn.Conv1d(self.feature_dim, hidden_dim, kernel_size=1)
        self.temporal = DilatedCNNEmbedding(hidden_dim, dilations=dilations, layers_per_dilation=1, dropout=dropout)
        self.classifier = nn.Conv1d(hidden_dim, self.num_classes + 1, kernel_size=1)

    @property
    def receptive_field(self) -> int:
        """Snippets each output sees: 1 + 2 * sum(dilations) (kernel 3)."""
        return 1 + 2 * sum(self.dilations)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.temporal(torch.relu(self.projection(features))))
