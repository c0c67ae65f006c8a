"""The naive reference detector of notebook 01: classify every snippet on its own, threshold, group.

``SnippetClassifier`` looks at one snippet at a time (1x1 convolutions, i.e. a small MLP shared over time),
so it has no temporal context at all. Detection thresholds the foreground probability, groups consecutive
foreground snippets of the same arg-max class into segments and scores each by its mean class probability;
class-aware Soft-NMS then removes duplicates. Every later detector should beat it.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from tadlab.labels import snippet_labels
from tadlab.segments import batched_soft_nms


class SnippetClassifier(nn.Module):
    """Per-snippet (K+1)-way classifier; background is class index K.

    Args:
        feature_dim: C, channels of the input features.
        num_classes: K action classes.
        hidden_dim: width of the hidden 1x1 layer; ``None`` gives a linear classifier (one 1x1 conv).
        dropout: dropout after the hidden layer.
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden_dim: int | None = 128, dropout: float = 0.1):
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if hidden_dim is not None and (isinstance(hidden_dim, bool) or not isinstance(hidden_dim, numbers.Integral)
                                       or hidden_dim < 1):
            raise ValueError(f"hidden_dim must be a positive int or None, got {hidden_dim!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        feature_dim, num_classes = int(feature_dim), int(num_classes)
        self.feature_dim, self.num_classes = feature_dim, num_classes
        if hidden_dim is None:
            self.classifier = nn.Conv1d(feature_dim, num_classes + 1, kernel_size=1)
        else:
            self.classifier = nn.Sequential(
                nn.Conv1d(feature_dim, int(hidden_dim), kernel_size=1), nn.ReLU(), nn.Dropout(dropout),
                nn.Conv1d(int(hidden_dim), num_classes + 1, kernel_size=1),
            )

    def forward(self, features: torch.Tensor) -> dict:
        """features (B, C, T) -> {"logits": (B, K+1, T)}."""
        if features.dim() != 3 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must have shape (B, C={self.feature_dim}, T), got {tuple(features.shape)}")
        return {"logits": self.classifier(features)}

    def loss(self, outputs: dict, batch: dict) -> dict:
        """Cross-entropy against centre-rule snippet labels built from ``batch["segments"]`` and ``batch["labels"]``.

        Returns {"total", "ce"} (equal: the baseline has one term).
        """
        logits = outputs["logits"]
        targets = snippet_labels(batch["segments"], batch["labels"], logits.shape[-1], self.num_classes)
        ce = F.cross_entropy(logits, targets.to(logits.device), ignore_index=-1)
        return {"total": ce, "ce": ce}

    @torch.no_grad()
    def detect(self, outputs: dict, threshold: float = 0.5, nms_method: str = "gaussian", sigma: float = 0.5,
               iou_threshold: float = 0.5, min_score: float = 1e-3, top_k: int | None = 100) -> list[dict]:
        """Threshold, group and Soft-NMS the snippet probabilities of ``outputs["logits"]`` (B, K+1, T).

        A snippet is foreground when 1 - p(background) >= ``threshold``; consecutive foreground snippets with
        the same arg-max action class form a segment ``[first, last + 1)`` in snippet units, scored by the mean
        probability of that class over the segment. Returns one dict per video with "segments" (M, 2),
        "scores" (M,) and "labels" (M,) int64, after class-aware Soft-NMS (``nms_method``, ``sigma``,
        ``iou_threshold``, ``min_score``, ``top_k`` as in :func:`tadlab.segments.batched_soft_nms`).
        """
        logits = outputs["logits"]
        if logits.dim() != 3 or logits.shape[1] != self.num_classes + 1:
            raise ValueError(f"outputs['logits'] must have shape (B, K+1={self.num_classes + 1}, T), "
                             f"got {tuple(logits.shape)}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        probs = logits.float().softmax(dim=1)
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
            segments, scores, labels, _ = batched_soft_nms(
                segments, score[keep], run_key[keep], method=nms_method, sigma=sigma, iou_threshold=iou_threshold,
                min_score=min_score, top_k=top_k)
            detections.append({"segments": segments, "scores": scores, "labels": labels.long()})
        return detections
