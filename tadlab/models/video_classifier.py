"""From class-agnostic proposals to detections: a video-level classifier and the combination BMN uses.

BMN (like BSN and RCL) only proposes *where* actions are. On ActivityNet its detections take the video-level class
scores of a separate classifier and give every proposal the video's top class(es), with score = proposal score x
class score (BMN Sec. 4.3: the top-1 class of an untrimmed-video classifier; G-TAD and later work take the top 2).

- :class:`VideoClassifier`: which classes occur in a video, multi-label: a 1D conv (k=3) embedding of every snippet,
  mean and max pooled over time, then a linear layer -> K logits; trained with binary cross-entropy against the set
  of classes annotated in the video. It has ``forward`` and ``loss``, so ``tadlab.train.fit`` trains it.
- :func:`combine_proposals_with_classes`: proposals x top video classes -> detections.
- :class:`ProposalDetector`: a proposal generator (e.g. :class:`~tadlab.models.bmn.BMN`) and a classifier side by
  side, so ``fit`` trains both at once (their losses add; they share no parameters) and ``detect`` returns
  detections that ``tadlab.train.evaluate`` scores with mAP.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def video_class_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """labels (B, N) int64 padded with -1 -> (B, K) float multi-hot: 1 for every class annotated in the video."""
    if labels.dim() != 2 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (B, N) padded with -1, got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    if bool(((labels < -1) | (labels >= num_classes)).any()):
        raise ValueError(f"labels must lie in 0..{num_classes - 1} (or -1 for padding), got {labels.unique().tolist()}")
    hot = F.one_hot(labels.clamp(min=0), num_classes) * (labels >= 0)[..., None]
    return hot.amax(dim=1).float() if hot.shape[1] else hot.new_zeros(labels.shape[0], num_classes).float()


class VideoClassifier(nn.Module):
    """Multi-label video-level classifier: features (B, C, T) -> {"logits", "probs"} (B, K), probs = sigmoid.

    Args: feature_dim C, num_classes K, hidden (the snippet embedding's width), dropout (before the linear layer).
    ``center_features`` subtracts each video's per-channel mean over time first (a per-video offset is then
    invisible; the max pooling still sees where the evidence rises above the video's own level).
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = 64, dropout: float = 0.1,
                 center_features: bool = True):
        super().__init__()
        for name, value in [("feature_dim", feature_dim), ("num_classes", num_classes), ("hidden", hidden)]:
            _positive_int(name, value)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.feature_dim, self.num_classes, self.center_features = feature_dim, num_classes, bool(center_features)
        self.embed = nn.Sequential(nn.Conv1d(feature_dim, hidden, 3, padding=1), nn.ReLU())
        self.classify = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, num_classes))

    def forward(self, features: torch.Tensor) -> dict:
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or features.shape[1] != self.feature_dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must have shape (B, {self.feature_dim}, T), got {shape}")
        if self.center_features:
            features = features - features.mean(dim=2, keepdim=True)
        embedded = self.embed(features)  # (B, H, T)
        pooled = torch.cat([embedded.mean(dim=2), embedded.amax(dim=2)], dim=1)  # (B, 2H)
        logits = self.classify(pooled)
        return {"logits": logits, "probs": torch.sigmoid(logits)}

    def loss(self, outputs: dict, batch: dict) -> dict:
        """Binary cross-entropy of every class against :func:`video_class_targets`; returns {"total", "bce"}."""
        logits = outputs["logits"]
        targets = video_class_targets(batch["labels"].to(logits.device), self.num_classes).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, targets)
        return {"total": bce, "bce": bce}


def combine_proposals_with_classes(proposals: list[dict], class_scores: torch.Tensor, top_classes: int = 1) -> list:
    """Class-agnostic proposals x the video's best classes -> detections.

    proposals: one dict per video with ``segments`` (M, 2) and ``scores`` (M,); class_scores (B, K) video-level
    probabilities. Each proposal is repeated for each of the video's ``top_classes`` best classes, with label that
    class and score = proposal score x class score; returns one dict per video of ``segments`` (M * k, 2),
    ``scores`` (M * k,), ``labels`` (M * k,) int64, sorted by score (best first, ties keep proposal order).
    """
    _positive_int("top_classes", top_classes)
    if not isinstance(class_scores, torch.Tensor) or class_scores.dim() != 2:
        raise ValueError(f"class_scores must be a tensor (B, K), got "
                         f"{tuple(class_scores.shape) if isinstance(class_scores, torch.Tensor) else class_scores!r}")
    if class_scores.shape[0] != len(proposals):
        raise ValueError(f"class_scores has {class_scores.shape[0]} videos but proposals has {len(proposals)}")
    if top_classes > class_scores.shape[1]:
        raise ValueError(f"top_classes must be <= K = {class_scores.shape[1]}, got {top_classes}")
    detections = []
    for video, scores in zip(proposals, class_scores):
        best, classes = scores.topk(top_classes)  # (k,)
        segments = video["segments"].repeat(top_classes, 1)  # class-major: all proposals for class 1, then 2, ...
        combined = (best[:, None].to(video["scores"].dtype) * video["scores"][None, :]).reshape(-1)
        labels = classes[:, None].expand(-1, video["scores"].shape[0]).reshape(-1)
        order = combined.argsort(descending=True, stable=True)
        detections.append({"segments": segments[order], "scores": combined[order],
                           "labels": labels[order].to(torch.int64)})
    return detections


class ProposalDetector(nn.Module):
    """A proposal generator and a :class:`VideoClassifier` as one detector for ``fit``/``evaluate``.

    ``forward(features)`` returns the proposer's outputs plus ``class_logits`` and ``class_probs`` (B, K);
    ``loss`` adds the two losses (``total``) and reports the proposer's terms and ``classifier``;
    ``detect(outputs, top_classes=1, **proposal_kwargs)`` passes the class scores to the proposer's ``detect``.
    """

    def __init__(self, proposer: nn.Module, classifier: VideoClassifier):
        super().__init__()
        if not isinstance(classifier, VideoClassifier):
            raise TypeError(f"classifier must be a VideoClassifier, got {type(classifier).__name__}")
        for method in ("forward", "loss", "detect"):
            if not callable(getattr(proposer, method, None)):
                raise TypeError(f"proposer must have a {method}() method, got {type(proposer).__name__}")
        self.proposer, self.classifier = proposer, classifier

    @property
    def feature_dim(self) -> int:
        """C, the features' width (the proposer's)."""
        return self.proposer.feature_dim

    def forward(self, features: torch.Tensor) -> dict:
        outputs = dict(self.proposer(features))
        classes = self.classifier(features)
        outputs["class_logits"], outputs["class_probs"] = classes["logits"], classes["probs"]
        return outputs

    def loss(self, outputs: dict, batch: dict) -> dict:
        terms = dict(self.proposer.loss(outputs, batch))
        classifier = self.classifier.loss({"logits": outputs["class_logits"]}, batch)["total"]
        terms["total"] = terms["total"] + classifier
        terms["classifier"] = classifier
        return terms

    @torch.no_grad()
    def detect(self, outputs: dict, top_classes: int = 1, **proposal_kwargs) -> list[dict]:
        return self.proposer.detect(outputs, class_scores=outputs["class_probs"], top_classes=top_classes,
                                    **proposal_kwargs)
