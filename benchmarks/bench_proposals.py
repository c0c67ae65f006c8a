"""Time tadlab.eval's proposal AR@AN: 1,000 videos x 100 proposals, on loaded data and from files.

    .venv/bin/python benchmarks/bench_proposals.py [--videos 1000] [--per-video 100] [--repeats 5] [--reference]

Prints a table (wall-clock median and min of the repeats, least CPU time): evaluate_proposals on results already in
memory (dicts of loaded videos), from the two JSON files, and, with --reference, the loop re-implementation of the
official algorithm (tests/anet_proposal_reference.py; slow, one run) with the largest difference of the curves.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_eval import make_case, timings  # noqa: E402

from tadlab.data.schema import load_ground_truth, load_results  # noqa: E402
from tadlab.eval import ANET_TIOU, evaluate_proposals  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--per-video", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time the loop-based reference (slow)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the random case has a few zero-length proposals (clipped to the video)

    ground_truth, proposals = make_case(args.videos, args.per_video)
    for rows in proposals["results"].values():
        for row in rows:
            del row["label"]  # proposals: the ActivityNet results format without labels
    folder = Path(tempfile.mkdtemp(prefix="bench_proposals_"))
    gt_path, proposals_path = folder / "ground_truth.json", folder / "proposals.json"
    gt_path.write_text(json.dumps(ground_truth))
    proposals_path.write_text(json.dumps(proposals))
    with_labels = {"results": {video: [{**row, "label": "proposal"} for row in rows]
                               for video, rows in proposals["results"].items()}}
    videos, loaded = load_ground_truth(ground_truth), load_results(with_labels)
    metrics = evaluate_proposals(videos, loaded)
    rows = [
        ("tadlab.eval, loaded data", timings(lambda: evaluate_proposals(videos, loaded), args.repeats)),
        ("tadlab.eval, from files", timings(lambda: evaluate_proposals(gt_path, proposals_path), args.repeats)),
    ]
    if args.reference:
        from anet_proposal_reference import reference_proposals

        outcome = {}
        rows.append(("official algorithm (tests/anet_proposal_reference.py)",
                     timings(lambda: outcome.update(ref=reference_proposals(ground_truth, proposals, ANET_TIOU)), 1)))
        gap = np.abs(outcome["ref"][0] - metrics.recall).max()
        print(f"max |recall difference| tadlab.eval vs reference: {gap:.3g}")

    print(f"{args.videos} videos x {args.per_video} proposals, {metrics.num_ground_truth} instances, "
          f"{len(ANET_TIOU)} tIoU thresholds: AR@1 {metrics.ar_at(1):.4f}, AR@100 {metrics.ar_at(100):.4f}, "
          f"AUC {metrics.auc:.4f}")
    print(f"{'what':<56}{'median s':>10}{'min s':>8}{'CPU s':>8}{'runs':>6}")
    for name, (median, least, cpu, runs) in rows:
        print(f"{name:<56}{median:>10.3f}{least:>8.3f}{cpu:>8.3f}{runs:>6}")
    for path in (gt_path, proposals_path):
        path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
