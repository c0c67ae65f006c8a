"""Notebook 06, section 7: where BMN's missing recall is. For each seed, BMN trained with notebook 06's recipe
(anet world at T = D = 50, lr 3e-3, 15 epochs, batch 8), then its proposals on testing four ways: its own map or
the oracle map (target tIoU in both channels), with BMN's boundary candidates or with every valid cell a candidate.

    python scripts/rrm_candidates.py                        # profile full, seeds 0 1 2 -> results/06_candidates.json
    python scripts/rrm_candidates.py --profile smoke --seeds 0 --output /tmp/c.json

Only proposals are measured (AR@AN and its area, recall of the shortest instances), so no classifier is trained.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import tadlab
from tadlab.data.collate import collate_videos
from tadlab.data.schema import detections_to_results
from tadlab.eval import ANET_TIOU, evaluate_proposals
from tadlab.experiments import run_seeds, save_runs, standard_world
from tadlab.models import BMN
from tadlab.models import bmn as bmn_module
from tadlab.segments import segment_iou
from tadlab.train import fit

ROOT = Path(__file__).resolve().parent.parent
NUM_SNIPPETS, EPOCHS, LR = 50, 15, 3e-3  # notebook 06's world and BMN recipe (chosen on validation there)
SHORT = 0.2  # instances covering at most this share of the video


def short_recall(proposals: list, items: list) -> float:
    """AR@100 (tIoU 0.5:0.95) of the instances covering at most SHORT of their video (NaN when there are none)."""
    found = []
    for item, p in zip(items, proposals):
        short = (item["segments"][:, 1] - item["segments"][:, 0]) / NUM_SNIPPETS <= SHORT
        if short.any():
            tiou = segment_iou(item["segments"][short], p["segments"][:100].to(item["segments"].dtype))
            best = tiou.amax(1) if tiou.shape[1] else torch.zeros(len(tiou))
            found.append((best.numpy()[:, None] >= np.asarray(ANET_TIOU)[None]).mean(1))
    return float(np.concatenate(found).mean()) if found else float("nan")


def recipe(profile: str, epochs: int):
    def run(seed: int) -> dict:
        world = standard_world("anet", profile, seed, num_snippets=NUM_SNIPPETS)
        tadlab.seed_everything(seed)
        model = BMN(world.feature_dim, NUM_SNIPPETS, **bmn_module.CPU_CONFIG, center_features=True)
        fit(model, world.dataset("training"), epochs=epochs, lr=LR, seed=seed, batch_size=8, weight_decay=1e-4,
            device="cpu", progress=False)
        items = list(world.dataset("testing"))
        batch = collate_videos(items)
        with torch.no_grad():
            outputs = model.eval()(batch["features"])
        targets = model.targets(batch)
        oracle = {**outputs, "confidence": targets["iou"][:, None].expand(-1, 2, -1, -1)}
        ids, durations = [v["video_id"] for v in items], [v["duration"] for v in items]
        rows = {}
        for name, out in (("BMN", outputs), ("oracle map", oracle)):
            for candidates, suffix in (("peaks", ""), ("all", ", every cell a candidate")):
                proposals = model.detect(out, candidates=candidates)
                ar = evaluate_proposals(world.ground_truth, detections_to_results(
                    proposals, ids, durations, NUM_SNIPPETS, ["action"]), subset="testing")
                rows[name + suffix] = {"AR@10": ar.ar_at(10), "AR@100": ar.ar_at(100), "AUC": ar.auc,
                                       "AR@100 short": short_recall(proposals, items)}
        return rows
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["smoke", "ci", "full"], default="full")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "06_candidates.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    epochs = 1 if args.profile == "smoke" else EPOCHS
    runs = run_seeds(recipe(args.profile, epochs), args.seeds)
    save_runs(args.output, runs.values(), overwrite=True, notebook="06", profile=args.profile,
              num_snippets=NUM_SNIPPETS, epochs=epochs, short_coverage=SHORT)
    for name, row in runs.items():
        print(f"{name:<36} AR@100 {row.mean('AR@100'):.3f}  short {row.mean('AR@100 short'):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
