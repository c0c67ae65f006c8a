"""Notebook 05's experiments: SP-TAD on the THUMOS-like world, the recipe on validation and the rows on testing.

    python scripts/sptad_experiments.py recipe   [--profile full] [--seeds 0]       -> results/05_recipe_validation.json
    python scripts/sptad_experiments.py headline [--profile full] [--seeds 0 1 2]   -> results/05_sptad.json
    python scripts/sptad_experiments.py ablations [--profile full] [--seeds 0]      -> results/05_ablations.json
    python scripts/sptad_experiments.py job VARIANT --seed K [--profile full]       -> results/05_parts/VARIANT.seedK.json
    python scripts/sptad_experiments.py merge [--parts DIR] [--out DIR]           -> results/05_stages.json, ...

The notebook imports this module (``RECIPE``, :func:`train_sptad`, :func:`measure`, :func:`duplicate_share`,
:func:`diagnose`) and runs the same functions at its own profile; at ``profile="full"`` they take too long for a
notebook on a 2-core CPU, so this script runs them once and the notebook prints the stored rows.

Per seed, on the world of that seed (``standard_world("thumos", profile, seed)``), measured on testing:
``headline`` and ``ablations`` are the first, 20-epoch rows (SP-TAD S = 4 without and with Soft-NMS on three
seeds; one-to-many and one stage on seed 0). ``job`` trains one :data:`VARIANTS` row (one change to the headline
model, :data:`LONG_EPOCHS` epochs) for one seed, so that two processes can share the two cores::

    for v in "S=4" "S=1" ...; do for k in 0 1 2; do echo "$v $k"; done; done |
        xargs -P 2 -L 1 sh -c 'python scripts/sptad_experiments.py job "$0" --seed "$1"'

and ``merge`` gathers the parts into ``05_stages.json`` (Table 6's stage sweep), ``05_variants.json`` (matching,
N, pyramid: one change each) and ``05_duration.json`` (per-length breakdown of SP-TAD and the context baseline).
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
LONG_EPOCHS = {"smoke": 1, "ci": 8, "full": 60}  # the job rows: 20 epochs at "full" left SP-TAD under-trained
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
    return {**metrics, **diagnose(model, world, subset, device),
            "duration": duration(model, world, subset, device, **detect_kwargs)}


def duration(model, world, subset: str = "testing", device="cpu", **detect_kwargs) -> dict:
    """:func:`tadlab.diagnostics.duration_breakdown` of ``model`` on ``subset``: per THUMOS length bin (DETAD's XS
    to XL, cut at 3, 6, 12 and 18 s), the instances' mean best same-class tIoU and share found at tIoU 0.5."""
    from tadlab.diagnostics import DURATION_EDGES, duration_breakdown
    from tadlab.train import predict

    items = list(world.dataset(subset))
    return duration_breakdown(predict(model, items, device=device, **detect_kwargs), items, DURATION_EDGES["thumos"])


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


# One change each to the headline model (S = 4, N = 30, one-to-one, intermediate-output pyramid); "context" is
# notebook 01's temporal-context baseline, retrained on the same world for its per-length breakdown.
VARIANTS = {
    "S=1": {"num_stages": 1}, "S=2": {"num_stages": 2}, "S=4": {}, "S=6": {"num_stages": 6},
    "one-to-many": {"assignment": "one_to_many"},
    "N=10": {"num_proposals": 10}, "N=60": {"num_proposals": 60},
    "pyramid on the last layer": {"pyramid": "last"}, "last layer only": {"pyramid": "single"},
    "context": None,
}
WITH_SOFT_NMS = ("S=4", "one-to-many")  # also decoded with Soft-NMS: does NMS help after one-to-one matching?
PARTS = ROOT / "results" / "05_parts"


def job_rows(variant: str, seed: int, profile: str, device="cpu", lr: float | None = None) -> dict:
    """One :data:`VARIANTS` row for one seed, trained :data:`LONG_EPOCHS` epochs, on testing: ``{row: metrics}``."""
    from tadlab.eval import THUMOS_TIOU
    from tadlab.experiments import BASELINE_EPOCHS, baseline_rows, standard_world

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    world = standard_world("thumos", profile, seed)
    if VARIANTS[variant] is None:  # the baselines, as notebook 01 trains them, plus their per-length breakdown
        models = {}
        rows = baseline_rows(world, THUMOS_TIOU, seed=seed, epochs=BASELINE_EPOCHS[profile]["thumos"], device=device,
                             models=models)
        rows["context"]["duration"] = duration(models["context"], world, device=device, decoder="runs")
        rows["class map grouping"]["duration"] = duration(models["context"], world, device=device,
                                                          decoder="class_map")
        return {name: rows[name] for name in ("context", "class map grouping")}
    model, history = train_sptad(world, seed, LONG_EPOCHS[profile], RECIPE["lr"] if lr is None else lr, device,
                                 **VARIANTS[variant])
    rows = {variant: {**measure(model, world, device=device), "final_loss": history.train["total"][-1]}}
    if variant in WITH_SOFT_NMS:
        rows[f"{variant} + Soft-NMS"] = measure(model, world, device=device, nms={})
    return rows


STORED_ROWS = {  # the merged files: which parts' rows each holds, in order
    "05_stages.json": ("S=1", "S=2", "S=4", "S=4 + Soft-NMS", "S=6"),
    "05_variants.json": ("one-to-many", "one-to-many + Soft-NMS", "N=10", "N=60", "pyramid on the last layer",
                         "last layer only", "context", "class map grouping"),
}


def merge(profile: str, parts_dir=PARTS, out_dir=ROOT / "results") -> list:
    """Gather the job files in ``parts_dir`` into :data:`STORED_ROWS`'s files in ``out_dir`` (overwritten); every
    row of a file must have the same seeds. Returns the paths written."""
    from tadlab.experiments import SeedRuns, load_runs, save_runs

    parts: dict[str, dict[int, dict]] = {}
    written = []
    for path in sorted(Path(parts_dir).glob("*.json")):
        for name, row in load_runs(path).items():
            for seed, metrics in zip(row.seeds, row.metrics):
                parts.setdefault(name, {})[seed] = metrics
    for filename, names in STORED_ROWS.items():
        present = [name for name in names if name in parts]
        if not present:
            continue
        seeds = sorted(parts[present[0]])
        uneven = {name: sorted(parts[name]) for name in present if sorted(parts[name]) != seeds}
        if uneven:
            raise ValueError(f"{filename}: rows on other seeds than {seeds}: {uneven}")
        runs = [SeedRuns(name, seeds, [parts[name][s] for s in seeds]) for name in present]
        written.append(save_runs(Path(out_dir) / filename, runs, overwrite=True, notebook="05", profile=profile,
                                 epochs=LONG_EPOCHS[profile], model=MODEL, train=TRAIN, lr=RECIPE["lr"],
                                 variants=VARIANTS))
        print(f"{filename}: {present}, seeds {seeds}")
    return written


def main(argv=None) -> None:
    from tadlab.experiments import run_seeds, save_runs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("recipe", "headline", "ablations", "job", "merge"))
    parser.add_argument("variant", nargs="?", default=None, help="job: one of VARIANTS")
    parser.add_argument("--seed", type=int, default=None, help="job: the seed")
    parser.add_argument("--parts", default=str(PARTS), help="job: where its file goes; merge: where to read them")
    parser.add_argument("--profile", default="full", choices=("smoke", "ci", "full"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--lr", type=float, default=None, help="instead of RECIPE['lr'] (headline, ablations)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "merge":
        merge(args.profile, args.parts, Path(args.out) if args.out else ROOT / "results")
        return None
    if args.what == "job":
        if args.variant is None or args.seed is None:
            parser.error("job needs a VARIANT and --seed")
        runs = run_seeds(lambda s: job_rows(args.variant, s, args.profile, lr=args.lr), [args.seed])
        Path(args.parts).mkdir(parents=True, exist_ok=True)
        out = Path(args.parts) / f"{args.variant.replace(' ', '_')}.seed{args.seed}.json"
        save_runs(out, runs.values(), overwrite=True, notebook="05", profile=args.profile,
                  epochs=LONG_EPOCHS[args.profile], variant=args.variant)
        print(out, {name: round(row.mean(), 4) for name, row in runs.items()})
        return None
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
    save_runs(out, runs.values(), overwrite=True, notebook="05", profile=args.profile, epochs=EPOCHS[args.profile],
              model=MODEL, train=TRAIN, lr=args.lr if args.lr is not None else RECIPE["lr"])
    from tadlab.experiments import results_table
    print(results_table(runs.values(), keys=("average_mAP", "duplicates")))


if __name__ == "__main__":
    sys.exit(main())
