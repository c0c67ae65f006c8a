"""Notebook 05's experiments: SP-TAD on the THUMOS-like world, the recipe on validation and the rows on testing.

    python scripts/sptad_experiments.py recipe   [--profile full] [--seeds 0]       -> results/05_recipe_validation.json
    python scripts/sptad_experiments.py headline [--profile full] [--seeds 0 1 2]   -> results/05_sptad.json
    python scripts/sptad_experiments.py ablations [--profile full] [--seeds 0]      -> results/05_ablations.json
    python scripts/sptad_experiments.py longer    [--profile full] [--seeds 0]      -> results/05_longer.json

The notebook imports this module (``RECIPE``, :func:`train_sptad`, :func:`measure`, :func:`duplicate_share`,
:func:`diagnose`) and runs the same functions at its own profile; at ``profile="full"`` they take too long for a
notebook on a 2-core CPU, so this script runs them once and the notebook prints the stored rows.

Per seed, on the world of that seed (``standard_world("thumos", profile, seed)``), measured on testing:
``headline`` trains SP-TAD as the recipe says (S = 4 stages, one-to-one matching), decoded without and with
Soft-NMS; ``ablations`` trains the same head with one-to-many assignment (without and with Soft-NMS) and SP-TAD
with one stage. (On 2 shared CPU cores one full-profile training takes several minutes, so the ablations ran for
seed 0 only.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

# The CPU model (d = 64 instead of 256, N = 30 proposals instead of 50, d_h = 16 instead of 64, T' = 8 instead of 16)
MODEL = dict(hidden=64, heads=4, num_proposals=30, num_stages=4, dynamic_dim=16, soi_points=8, center_features=True)
# Training: AdamW with a cosine schedule, batch 8, weight decay 1e-4 and gradient clipping at norm 1 (Sparse R-CNN's
# optimiser and decay; its lr 2.5e-5 with batch 16 is for 1x-schedule COCO; we choose lr on validation).
TRAIN = dict(batch_size=8, weight_decay=1e-4, clip_grad_norm=1.0)
EPOCHS = {"smoke": 1, "ci": 8, "full": 20}
RECIPE_LRS = (1e-3, 3e-3)
RECIPE = {"lr": 3e-3}  # the choice of the validation sweep (results/05_recipe_validation.json), see the notebook
DUPLICATE_IOU = 0.7


def train_sptad(world, seed: int, epochs: int, lr: float, device="cpu", **overrides):
    """An SP-TAD of :data:`MODEL` (with ``overrides``) trained with :func:`tadlab.train.fit` on ``world``'s training
    videos; returns ``(model, history)``."""
    from tadlab.models.sptad import SPTAD
    from tadlab.train import fit
    from tadlab.utils import seed_everything

    seed_everything(seed)
    model = SPTAD(world.feature_dim, world.num_classes, **{**MODEL, **overrides})
    history = fit(model, world.dataset("training"), epochs=epochs, lr=lr, seed=seed, device=device, progress=False,
                  **TRAIN)
    return model, history


def duplicate_share(model, world, subset: str = "testing", device="cpu", top: int = 10, **detect_kwargs) -> float:
    """Of every video's ``top`` best detections, the share that overlaps a better-scored detection of the same class
    at tIoU >= 0.7: detections that an NMS would remove or decay."""
    from tadlab.segments import segment_iou
    from tadlab.train import predict

    duplicates, total = 0, 0
    for det in predict(model, world.dataset(subset), device=device, **detect_kwargs):
        order = det["scores"].argsort(descending=True)[:top]
        segments, labels = det["segments"][order], det["labels"][order]
        if len(order) < 2:
            total += len(order)
            continue
        overlap = segment_iou(segments, segments)
        earlier = torch.ones_like(overlap, dtype=torch.bool).tril(-1)  # row i, column j < i: a better detection
        same = labels[:, None] == labels[None, :]
        duplicates += int(((overlap >= DUPLICATE_IOU) & same & earlier).any(1).sum())
        total += len(order)
    return duplicates / max(total, 1)


@torch.no_grad()
def diagnose(model, world, subset: str = "testing", device="cpu", iou: float = 0.5) -> dict:
    """Localisation and classification apart, over every instance of ``subset``: ``localised``, the share of
    instances that some last-stage proposal overlaps by tIoU >= ``iou`` (whatever its class); ``best_class_right``,
    the share whose best-overlapping proposal has the instance's class as its top class; ``video_class_right``, the
    share of instances whose class is the video-level head's top class."""
    from tadlab.data.collate import collate_videos
    from tadlab.segments import segment_iou

    items = list(world.dataset(subset))
    model = model.to(device).eval()
    localised = class_right = video_right = total = 0
    for start in range(0, len(items), 32):
        chunk = items[start:start + 32]
        outputs = model(collate_videos(chunk)["features"].to(device))
        for i, item in enumerate(chunk):
            if len(item["labels"]) == 0:
                continue
            overlap = segment_iou(item["segments"], outputs["segments"][i].cpu().clamp(0, world.num_snippets))
            best = overlap.argmax(1)
            localised += int((overlap.amax(1) >= iou).sum())
            class_right += int((outputs["logits"][i].cpu()[best].argmax(-1) == item["labels"]).sum())
            if "video_logits" in outputs:
                video_right += int((outputs["video_logits"][i].cpu().argmax() == item["labels"]).sum())
            total += len(item["labels"])
    total = max(total, 1)
    return {"localised": localised / total, "best_class_right": class_right / total,
            "video_class_right": video_right / total}


def measure(model, world, subset: str = "testing", device="cpu", **detect_kwargs) -> dict:
    """average mAP, mAP per tIoU (THUMOS's 0.3:0.7), the duplicate share and :func:`diagnose` of ``model`` on
    ``subset``."""
    from tadlab.eval import THUMOS_TIOU
    from tadlab.experiments import detection_metrics

    metrics = detection_metrics(model, world, THUMOS_TIOU, subset, device, **detect_kwargs)
    metrics["duplicates"] = duplicate_share(model, world, subset, device, **detect_kwargs)
    return {**metrics, **diagnose(model, world, subset, device)}


def recipe_rows(seed: int, profile: str, device="cpu", lrs=RECIPE_LRS) -> dict:
    """The recipe sweep: SP-TAD (:data:`MODEL`) at each learning rate, measured on validation."""
    from tadlab.experiments import standard_world

    world = standard_world("thumos", profile, seed)
    rows = {}
    for lr in lrs:
        model, _ = train_sptad(world, seed, EPOCHS[profile], lr, device)
        rows[f"SP-TAD, lr {lr:g}"] = measure(model, world, "validation", device)
    return rows


def headline_rows(seed: int, profile: str, device="cpu", lr: float | None = None, models: dict | None = None) -> dict:
    """SP-TAD as the recipe says (S = 4, one-to-one) on testing, without and with Soft-NMS."""
    from tadlab.experiments import standard_world

    world = standard_world("thumos", profile, seed)
    model, history = train_sptad(world, seed, EPOCHS[profile], RECIPE["lr"] if lr is None else lr, device)
    if models is not None:
        models.update(model=model, history=history, world=world)
    return {"SP-TAD (S=4, one-to-one)": measure(model, world, device=device),
            "SP-TAD (S=4, one-to-one) + Soft-NMS": measure(model, world, device=device, nms={})}


def ablation_rows(seed: int, profile: str, device="cpu", lr: float | None = None) -> dict:
    """The same head trained with one-to-many assignment (without and with Soft-NMS), and SP-TAD with one stage."""
    from tadlab.experiments import standard_world

    world = standard_world("thumos", profile, seed)
    lr = RECIPE["lr"] if lr is None else lr
    one_to_many, _ = train_sptad(world, seed, EPOCHS[profile], lr, device, assignment="one_to_many")
    rows = {"one-to-many": measure(one_to_many, world, device=device),
            "one-to-many + Soft-NMS": measure(one_to_many, world, device=device, nms={})}
    single, _ = train_sptad(world, seed, EPOCHS[profile], lr, device, num_stages=1)
    rows["SP-TAD, 1 stage"] = measure(single, world, device=device)
    return rows


def longer_rows(seed: int, profile: str, device="cpu", lr: float | None = None, factor: int = 3) -> dict:
    """SP-TAD as in the headline, trained ``factor`` times as many epochs: is it only under-trained?"""
    from tadlab.experiments import standard_world

    world = standard_world("thumos", profile, seed)
    model, _ = train_sptad(world, seed, factor * EPOCHS[profile], RECIPE["lr"] if lr is None else lr, device)
    return {f"SP-TAD, {factor * EPOCHS[profile]} epochs": measure(model, world, device=device)}


def main(argv=None) -> None:
    from tadlab.experiments import run_seeds, save_runs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("recipe", "headline", "ablations", "longer"))
    parser.add_argument("--profile", default="full", choices=("smoke", "ci", "full"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--lr", type=float, default=None, help="instead of RECIPE['lr'] (headline, ablations)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "recipe":
        seeds = args.seeds or [0]
        runs = run_seeds(lambda s: recipe_rows(s, args.profile), seeds, subset="validation")
        out = args.out or ROOT / "results" / "05_recipe_validation.json"
    elif args.what == "headline":
        seeds = args.seeds or [0, 1, 2]
        runs = run_seeds(lambda s: headline_rows(s, args.profile, lr=args.lr), seeds)
        out = args.out or ROOT / "results" / "05_sptad.json"
    elif args.what == "ablations":
        seeds = args.seeds or [0]
        runs = run_seeds(lambda s: ablation_rows(s, args.profile, lr=args.lr), seeds)
        out = args.out or ROOT / "results" / "05_ablations.json"
    else:
        seeds = args.seeds or [0]
        runs = run_seeds(lambda s: longer_rows(s, args.profile, lr=args.lr), seeds)
        out = args.out or ROOT / "results" / "05_longer.json"
    save_runs(out, runs.values(), overwrite=True, notebook="05", profile=args.profile, epochs=EPOCHS[args.profile],
              model=MODEL, train=TRAIN, lr=args.lr if args.lr is not None else RECIPE["lr"])
    from tadlab.experiments import results_table
    print(results_table(runs.values(), keys=("average_mAP", "duplicates")))


if __name__ == "__main__":
    sys.exit(main())
