"""Time tadlab.eval on an ActivityNet-sized case: 1,000 videos x 100 predictions at 10 tIoU thresholds.

    .venv/bin/python benchmarks/bench_eval.py [--videos 1000] [--per-video 100] [--repeats 5] [--reference]

Prints a table (median and min of the repeats): the end-to-end call from JSON dicts (schema validation included), the
evaluation of already-loaded data, and, with --reference, the loop-based oracle of tests/anet_reference.py
(structured like the official code; slow, so it runs once unless --reference-repeats says otherwise).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tadlab.data.schema import load_ground_truth, load_results
from tadlab.eval import ANET_TIOU, evaluate_detection


def make_case(num_videos: int, per_video: int, num_classes: int = 200, seed: int = 0):
    """ActivityNet-like ground truth (1-3 long instances per video, 200 classes) and results: per video,
    ``per_video`` predictions jittered around its instances or random, labelled with its classes or others."""
    rng = np.random.default_rng(seed)
    classes = [f"class_{i:03d}" for i in range(num_classes)]
    database, results = {}, {}
    for v in range(num_videos):
        video_id, duration = f"v_{v:05d}", float(rng.uniform(30, 240))
        annotations = []
        for _ in range(rng.integers(1, 4)):
            length = rng.uniform(0.1, 0.6) * duration
            start = rng.uniform(0, duration - length)
            annotations.append({"segment": [start, start + length], "label": classes[rng.integers(num_classes)]})
        database[video_id] = {"subset": "validation", "duration": duration, "annotations": annotations}
        detections = []
        for _ in range(per_video):
            anchor = annotations[rng.integers(len(annotations))]
            if rng.random() < 0.6:  # near an instance
                start, end = np.array(anchor["segment"]) + rng.normal(0, 0.1 * duration, 2)
            else:
                start, end = np.sort(rng.uniform(0, duration, 2))
            start, end = float(np.clip(min(start, end), 0, duration)), float(np.clip(max(start, end), 0, duration))
            label = anchor["label"] if rng.random() < 0.7 else classes[rng.integers(num_classes)]
            detections.append({"segment": [start, end], "label": label, "score": float(rng.random())})
        results[video_id] = detections
    return {"database": database}, {"results": results}


def timings(fn, repeats: int) -> tuple[float, float, int]:
    """(median, min, runs) wall seconds; the min is the least disturbed by other load on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--per-video", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time the loop-based reference (slow)")
    parser.add_argument("--reference-repeats", type=int, default=1)
    args = parser.parse_args()

    ground_truth, results = make_case(args.videos, args.per_video)
    videos, detections = load_ground_truth(ground_truth), load_results(results)
    rows = [
        ("tadlab.eval, from JSON dicts", timings(lambda: evaluate_detection(ground_truth, results), args.repeats)),
        ("tadlab.eval, loaded data", timings(lambda: evaluate_detection(videos, detections), args.repeats)),
        ("schema loading only", timings(lambda: (load_ground_truth(ground_truth), load_results(results)),
                                        args.repeats)),
    ]
    metrics = evaluate_detection(videos, detections)
    if args.reference:
        from anet_reference import reference_evaluate

        outcome = {}
        rows.append(("loop reference (tests/anet_reference.py)",
                     timings(lambda: outcome.update(ref=reference_evaluate(ground_truth, results, ANET_TIOU)),
                             args.reference_repeats)))
        gap = np.abs(outcome["ref"][1] - metrics.mAP).max()
        print(f"max |mAP difference| tadlab.eval vs reference: {gap:.3g}")

    print(f"{args.videos} videos x {args.per_video} predictions, {len(ANET_TIOU)} tIoU thresholds, "
          f"{len(metrics.class_names)} classes; average mAP {metrics.average_mAP:.4f}")
    print(f"{'what':<44}{'median s':>10}{'min s':>8}{'runs':>6}")
    for name, (median, least, runs) in rows:
        print(f"{name:<44}{median:>10.3f}{least:>8.3f}{runs:>6}")


if __name__ == "__main__":
    main()
