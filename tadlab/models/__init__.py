"""Detectors. Each has ``forward(features (B, C, T)) -> dict``, ``loss(outputs, batch) -> dict`` with "total", and
``detect(outputs, ...) -> list`` of per-video {"segments" (M, 2) snippet units, "scores" (M,), "labels" (M,)}."""
from tadlab.models.baseline import SnippetClassifier
from tadlab.models.gsmt import GSMT
from tadlab.models.sptad import SPTAD

__all__ = ["GSMT", "SPTAD", "SnippetClassifier"]
