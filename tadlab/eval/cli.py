"""``python -m tadlab.eval``: detection mAP or, with ``--proposals``, AR@AN, from two JSON files (no torch)."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from tadlab.eval.common import DEFAULT_SUBSET, parse_tiou
from tadlab.eval.detection import evaluate_detection
from tadlab.eval.proposals import evaluate_proposals


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tadlab.eval",
                                     description="ActivityNet detection mAP or proposal AR@AN, as the official "
                                                 "evaluation computes them.")
    parser.add_argument("ground_truth", help="ActivityNet-style ground truth JSON ('database')")
    parser.add_argument("results", help="results JSON ('results' -> video id -> segment, label, score); with "
                                        "--proposals the label may be absent")
    parser.add_argument("--subset", default=DEFAULT_SUBSET,
                        help="score the ground-truth videos of this subset; 'all' for every video (default: "
                             "'validation' when the ground truth has several subsets, as the official code; "
                             "else every video)")
    parser.add_argument("--tiou", default="0.5:0.95:0.05",
                        help="thresholds 'start:stop:step' or 'a,b,c' (default ActivityNet 0.5:0.95:0.05; "
                             "THUMOS14: 0.3:0.7:0.1)")
    parser.add_argument("--proposals", action="store_true", help="evaluate proposals: average recall vs average "
                        "number of proposals per video (AR@AN) and its area (AUC)")
    parser.add_argument("--max-proposals", default="100", metavar="N",
                        help="with --proposals: average proposals per video at the curve's end (default 100, as "
                             "the official command; 'all' for the file's own average)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table (fractions "
                        "in [0, 1]; detection: mAP, average_mAP, tiou_thresholds, subset; proposals: AR@1, AR@5, "
                        "AR@10, AR@100, AUC, average_recall, proposals_per_video, ...)")
    parser.add_argument("--per-class", action="store_true", help="with --json: add 'per_class_ap'")
    parser.add_argument("--no-per-class", action="store_true", help="table: leave out the per-class AP")
    parser.add_argument("--drop-duplicate-gt", action="store_true", help="keep one of identical GT instances")
    parser.add_argument("--ignore-videos", default=None, metavar="FILE",
                        help="local file of video ids to leave out (JSON list or one id per line)")
    return parser


def _max_proposals(text: str):
    if text == "all":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--max-proposals must be a positive number or 'all', got {text!r}") from None


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv=None) -> int:
    """``python -m tadlab.eval GROUND_TRUTH.json RESULTS.json [--proposals] [--subset S] [--tiou ...] [--json]``."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("ground_truth", "results"):
        if not Path(getattr(args, name)).is_file():
            parser.error(f"{name}: no such file {getattr(args, name)!r}")
    subset = None if args.subset == "all" else args.subset
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # "warning: ..." on stderr, without a source line of tadlab
            if args.proposals:
                metrics = evaluate_proposals(args.ground_truth, args.results, _max_proposals(args.max_proposals),
                                             parse_tiou(args.tiou), subset=subset, ignore_videos=args.ignore_videos)
            else:
                metrics = evaluate_detection(args.ground_truth, args.results, parse_tiou(args.tiou), subset=subset,
                                             drop_duplicate_gt=args.drop_duplicate_gt,
                                             ignore_videos=args.ignore_videos)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.subset == DEFAULT_SUBSET and metrics.subset is not None:
        print(f"scored subset {metrics.subset!r}, the official default for a ground truth with several subsets "
              f"(--subset all scores every video)", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics.to_dict() if args.proposals else metrics.to_dict(per_class=args.per_class)))
    elif args.proposals:
        print(metrics.table())
    else:
        print(metrics.table(per_class=not args.no_per_class))
    return 0
