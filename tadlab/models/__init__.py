"""Detectors. Each has ``forward(features (B, C, T)) -> dict``, ``loss(outputs, batch) -> dict`` with "total", and
``detect(outputs, ...) -> list`` of per-video {"segments" (M, 2) snippet units, "scores" (M,), "labels" (M,)}.

BMN proposes class-agnostic segments (label 0); ``ProposalDetector(BMN(...), VideoClassifier(...))`` turns them into
detections with video-level classes; ``BMN(..., refine=RRM(...))`` refines BMN's map recurrently (RCL).
ActionFormer is a one-stage, anchor-free reference detector (centre sampling on a local-window Transformer pyramid)."""
from tadlab.models.actionformer import ActionFormer, ActionFormerConfig
from tadlab.models.baseline import SnippetClassifier, TemporalContextClassifier
from tadlab.models.bmn import BMN
from tadlab.models.gsmt import GSMT
from tadlab.models.rrm import RRM
from tadlab.models.segtad import SegTAD, SegTADConfig
from tadlab.models.segtad_pdn import ProposalDetectionNetwork
from tadlab.models.sptad import SPTAD
from tadlab.models.video_classifier import ProposalDetector, VideoClassifier

__all__ = ["ActionFormer", "ActionFormerConfig", "BMN", "GSMT", "ProposalDetectionNetwork", "ProposalDetector", "RRM",
           "SPTAD", "SegTAD", "SegTADConfig", "SnippetClassifier", "TemporalContextClassifier", "VideoClassifier"]
