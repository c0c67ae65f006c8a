"""Time tadlab.eval's detection mAP on an ActivityNet-sized case, from files and on loaded data.

    .venv/bin/python benchmarks/bench_eval.py [--videos 1000] [--per-video 100] [--repeats 5] [--reference]
    .venv/bin/python benchmarks/bench_eval.py --videos 4728 --reference     # ActivityNet-1.3 validation size

Writes the case as JSON files in a temporary folder and prints a table (wall-clock median and min of the repeats,
and the least CPU time, which other load on a shared machine disturbs less): the evaluation from the two files
(reading, checking, scoring), reading and checking the results file alone (and its JSON parsing alone), the
evaluation of already-loaded data, the command line (start-up included, one run), and, with --reference, the
official algorithm as the loop re-implementation of tests/anet_reference.py runs it from the same files (slow:
one run unless --reference-repeats says otherwise).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tadlab.data.jsonio import read_json  # noqa: E402
from tadlab.data.schema import load_ground_truth, load_results  # noqa: E402
from tadlab.data.tables import read_results  # noqa: E402
from tadlab.eval import ANET_TIOU, evaluate_detection  # noqa: E402


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
    return {"version": "bench", "database": database}, {"version": "bench", "results": results}


def timings(fn, repeats: int) -> tuple[float, float, float, int]:
    """(median wall, min wall, min CPU, runs) in seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), min(walls), min(cpus), repeats


def command_line(gt_path: Path, results_path: Path) -> tuple[float, float, float, int]:
    """One run of ``python -m tadlab.eval`` (wall; CPU of the child process)."""
    before = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tadlab.eval", str(gt_path), str(results_path), "--json"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    wall = time.perf_counter() - before
    json.loads(done.stdout)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, wall, usage.ru_utime + usage.ru_stime, 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--per-video", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference", action="store_true", help="also time the loop-based reference (slow)")
    parser.add_argument("--reference-repeats", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the random case has a few zero-length predictions (clipped to the video)

    ground_truth, results = make_case(args.videos, args.per_video)
    folder = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    gt_path, results_path = folder / "ground_truth.json", folder / "results.json"
    gt_path.write_text(json.dumps(ground_truth))
    results_path.write_text(json.dumps(results))
    videos, detections = load_ground_truth(gt_path), load_results(results_path)
    metrics = evaluate_detection(videos, detections)
    count = args.videos * args.per_video
    rows = [
        ("tadlab.eval, from files", timings(lambda: evaluate_detection(gt_path, results_path), args.repeats)),
        ("  reading + checking the results file", timings(lambda: read_results(results_path), args.repeats)),
        ("  of which JSON parsing", timings(lambda: read_json(results_path), args.repeats)),
        ("tadlab.eval, loaded data", timings(lambda: evaluate_detection(videos, detections), args.repeats)),
        ("python -m tadlab.eval (start-up included)", command_line(gt_path, results_path)),
    ]
    if args.reference:
        from anet_reference import reference_evaluate

        outcome = {}

        def reference():
            with open(gt_path) as gt_file, open(results_path) as results_file:
                outcome["ref"] = reference_evaluate(json.load(gt_file), json.load(results_file), ANET_TIOU,
                                                    subset="validation")

        rows.append(("official algorithm (tests/anet_reference.py loop)", timings(reference, args.reference_repeats)))
        gap = np.abs(outcome["ref"][1] - metrics.mAP).max()
        print(f"max |mAP difference| tadlab.eval vs reference: {gap:.3g}")

    print(f"{args.videos} videos x {args.per_video} predictions ({count:,}; results file "
          f"{results_path.stat().st_size / 1e6:.1f} MB), {len(ANET_TIOU)} tIoU thresholds, "
          f"{len(metrics.class_names)} classes; average mAP {metrics.average_mAP:.4f}")
    print(f"{'what':<52}{'median s':>10}{'min s':>8}{'CPU s':>8}{'runs':>6}{'us/pred':>9}")
    for name, (median, least, cpu, runs) in rows:
        print(f"{name:<52}{median:>10.3f}{least:>8.3f}{cpu:>8.3f}{runs:>6}{1e6 * cpu / count:>9.2f}")
    for path in (gt_path, results_path):
        path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
