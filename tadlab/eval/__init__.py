"""ActivityNet evaluation, exactly as the official code computes it, vectorised, and without torch.

* :func:`evaluate_detection`: detection mAP at each tIoU threshold (:mod:`tadlab.eval.detection`);
* :func:`evaluate_proposals`: proposal average recall vs average number of proposals per video (AR@AN) and the
  area under that curve (:mod:`tadlab.eval.proposals`);
* :mod:`tadlab.eval.common`: tIoU thresholds, the subset (the official default "validation"), inputs, id checks.

Command line (``python -m tadlab.eval --help``)::

    python -m tadlab.eval GROUND_TRUTH.json RESULTS.json [--subset S] [--tiou 0.5:0.95:0.05] [--json] [--per-class]
    python -m tadlab.eval GROUND_TRUTH.json PROPOSALS.json --proposals [--max-proposals 100] [--json]
"""
from tadlab.eval.cli import main
from tadlab.eval.common import ANET_TIOU, DEFAULT_SUBSET, MAX_TIOU_THRESHOLDS, THUMOS_TIOU, parse_tiou
from tadlab.eval.detection import DetectionMetrics, evaluate_detection, interpolated_ap
from tadlab.eval.proposals import ProposalMetrics, evaluate_proposals

__all__ = ["ANET_TIOU", "DEFAULT_SUBSET", "DetectionMetrics", "MAX_TIOU_THRESHOLDS", "ProposalMetrics", "THUMOS_TIOU",
           "evaluate_detection", "evaluate_proposals", "interpolated_ap", "main", "parse_tiou"]
