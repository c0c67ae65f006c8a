"""Measure the statistics of the real benchmarks with tadlab.data.statistics and write results/real_benchmarks.json.

The annotation files are public but not part of tadlab; point the script at your copies:

    python scripts/real_statistics.py --thumos thumos14.json \
        --activitynet anet_anno_action.json --activitynet-info video_info_new.csv

``--thumos``: an ActivityNet-style JSON of THUMOS14 with durations (e.g. ActionFormer's ``thumos14.json``, subsets
"Validation" and "Test"). ``--activitynet``: the official ``activity_net.v1-3.min.json``, or BSN's
``anet_anno_action.json`` together with ``--activitynet-info video_info_new.csv`` (which holds the subsets).
Annotations are used as they are (a few THUMOS14 ones start after the stated duration: the video's duration is
taken as at least its last annotation's end, for the length fractions only).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tadlab.data.statistics import dataset_statistics

ROOT = Path(__file__).resolve().parent.parent


def _database(entries: dict, subset_of=None) -> dict:
    database = {}
    for video_id, entry in entries.items():
        annotations = [{"segment": [float(a["segment"][0]), float(a["segment"][1])], "label": a["label"]}
                       for a in entry["annotations"]]
        stated = float(entry.get("duration", entry.get("duration_second", 0.0)))
        duration = max([stated] + [a["segment"][1] for a in annotations])
        subset = subset_of[video_id] if subset_of else entry["subset"]
        database[video_id] = {"subset": subset.lower(), "duration": duration, "annotations": annotations}
    return {"database": database}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thumos", type=Path, required=True)
    parser.add_argument("--activitynet", type=Path, required=True)
    parser.add_argument("--activitynet-info", type=Path)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "real_benchmarks.json")
    args = parser.parse_args(argv)

    thumos = _database(json.loads(args.thumos.read_text())["database"])
    raw = json.loads(args.activitynet.read_text())
    if args.activitynet_info:
        with open(args.activitynet_info, newline="") as handle:
            subsets = {row["video"]: row["subset"] for row in csv.DictReader(handle)}
        activitynet = _database(raw, subsets)
    else:
        activitynet = _database(raw["database"])
    results = {
        "sources": {"thumos14": args.thumos.name, "activitynet13": args.activitynet.name},
        "thumos14": {s: dataset_statistics(thumos, s) for s in ("validation", "test")},
        "activitynet13": {s: dataset_statistics(activitynet, s) for s in ("training", "validation")},
    }
    args.output.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
