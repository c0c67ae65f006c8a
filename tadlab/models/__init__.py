"""Detectors. Each has ``forward(features (B, C, T)) -> dict``, ``loss(outputs, batch) -> dict`` with "total", and
``detect(outputs, ...) -> list`` of per-video {"segments" (M, 2) snippet units, "scores" (M,), "labels" (M,)}."""
from tadlab.models.baseline import SnippetClassifier, TemporalContextClassifier
from tadlab.models.gsmt import GSMT
from tadlab.models.segtad import SegTAD, SegTADConfig
from tadlab.models.segtad_pdn import ProposalDetectionNetwork

__all__ = ["GSMT", "ProposalDetectionNetwork", "SegTAD", "SegTADConfig", "SnippetClassifier",
           "TemporalContextClassifier"]
