"""Notebook 01's experiments: the three baselines every detector meets (:func:`tadlab.experiments.baseline_rows`:
naive per-snippet, temporal context, class-map grouping), on both presets.

- ``01_recipe_validation.json``: the recipe, chosen on validation (seed 0): a grid of learning rates and epochs
  per preset, each recipe scored by the mean of its three rows (:func:`chosen_recipe` applies the rule);
- ``01_baselines.json``: the three rows on testing over :data:`HEADLINE_SEEDS`, each preset at its chosen recipe,
  with the evaluation's sampling error (a bootstrap over the testing videos) and the breakdown by instance length. Notebooks 04-08 compare with these
  rows (the same worlds and seeds) instead of retraining them.
"""
from __future__ import annotations

import json

from tadlab.diagnostics import DURATION_EDGES
from tadlab.eval import ANET_TIOU, THUMOS_TIOU
from tadlab.experiments import BASELINE_ROWS, HEADLINE_SEEDS, baseline_rows, standard_world
from tadlab.pretrained import check_metrics
from tadlab.studies import Result, export_model, results_dir

NOTEBOOK = "01"
PRESETS = ("thumos", "anet")
TIOU = {"thumos": THUMOS_TIOU, "anet": ANET_TIOU}  # each benchmark's thresholds
# The grid on validation, (lr, epochs) per preset (shortened at "smoke" and "ci": epochs_at)
RECIPES = {"thumos": ((1e-3, 25), (3e-3, 25), (1e-2, 25), (3e-3, 12), (3e-3, 50), (3e-3, 100)),
           "anet": ((1e-3, 25), (3e-3, 25), (1e-2, 25), (3e-3, 12), (3e-3, 50))}
BOOTSTRAP = 100  # resamplings of the testing videos for the evaluation's sampling error (at "full")


def recipe_job(preset: str, lr: float, epochs: int) -> str:
    return f"{preset}_lr{lr:g}_e{epochs}"


RESULTS = [
    Result("01_recipe_validation.json", seeds=(0,), subset="validation",
           jobs=tuple(recipe_job(p, lr, e) for p in PRESETS for lr, e in RECIPES[p])),
    Result("01_baselines.json", jobs=PRESETS, seeds=HEADLINE_SEEDS, needs=("01_recipe_validation.json",),
           meta={"tiou": {p: [round(float(t), 2) for t in TIOU[p]] for p in PRESETS}}),
]


def epochs_at(profile: str, epochs: int) -> int:
    """A grid recipe's epochs at ``profile``: as written at "full", a twelfth (at least 1) elsewhere, so a smoke or
    ci run of the grid stays short and its recipes stay distinct."""
    return epochs if profile == "full" else max(1, epochs // 12)


def chosen_recipe(preset: str, profile: str) -> dict:
    """``{"lr", "epochs"}`` of the grid recipe with the best mean validation average mAP over the three rows, read
    from this profile's ``01_recipe_validation.json`` (ties: the earlier recipe of the grid)."""
    stored = json.loads((results_dir(profile) / "01_recipe_validation.json").read_text())
    rows = {row["name"]: row["metrics"][0]["average_mAP"] for row in stored["runs"]}
    scores = {}
    for lr, epochs in RECIPES[preset]:
        names = [f"{preset}: {row}, lr {lr:g}, {epochs_at(profile, epochs)} epochs" for row in BASELINE_ROWS]
        scores[lr, epochs] = sum(rows[name] for name in names) / len(names)
    lr, epochs = max(scores, key=lambda key: (scores[key], -RECIPES[preset].index(key)))
    return {"lr": lr, "epochs": epochs_at(profile, epochs)}


SHIPPED_SEEDS = (0,)  # the seeds whose trained models ship (tadlab.pretrained)
FACTORIES = {"naive": "tadlab.models.baseline:SnippetClassifier",
             "context": "tadlab.models.baseline:TemporalContextClassifier"}


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job in PRESETS:  # the testing rows at the chosen recipe
        recipe = chosen_recipe(job, profile)
        world, models = standard_world(job, profile, seed), {}
        rows = baseline_rows(world, TIOU[job], seed=seed, device=device, models=models,
                             bootstrap=BOOTSTRAP if profile == "full" else 0, duration_edges=DURATION_EDGES[job],
                             **recipe)
        meta = {"recipe": recipe}
        if seed in SHIPPED_SEEDS:
            meta["pretrained"] = [ship(models[name], name, job, seed, profile, recipe, rows, device)
                                  for name in ("naive", "context")]
        return {**{f"{job}: {row}": metrics for row, metrics in rows.items()}, "meta": meta}
    for preset in PRESETS:
        for lr, epochs in RECIPES[preset]:
            if job == recipe_job(preset, lr, epochs):
                epochs = epochs_at(profile, epochs)
                rows = baseline_rows(standard_world(preset, profile, seed), TIOU[preset], seed=seed, epochs=epochs,
                                     lr=lr, subset="validation", device=device)
                return {f"{preset}: {row}, lr {lr:g}, {epochs} epochs": metrics for row, metrics in rows.items()}
    raise ValueError(f"unknown job {job!r} of study 'baselines'")


def ship(model, name: str, preset: str, seed: int, profile: str, recipe: dict, rows: dict, device) -> dict:
    """Export a trained baseline (decoded by runs of one threshold, its "naive" or "context" row) for shipping."""
    world = standard_world(preset, profile, seed)
    kwargs = {"feature_dim": world.feature_dim, "num_classes": world.num_classes}
    detect = {"decoder": "runs"}
    metrics = {"average_mAP": rows[name]["average_mAP"],
               "class_map_average_mAP": rows["class map grouping"]["average_mAP"] if name == "context" else None,
               "check": check_metrics(model, world, TIOU[preset], device, **detect)}
    return export_model(model, study_name="baselines", job=preset, seed=seed, profile=profile, name=name,
                        preset=preset, factory=FACTORIES[name], kwargs=kwargs, detect=detect,
                        world={"preset": preset, "profile": profile, "seed": seed},
                        recipe={**recipe, "batch_size": 16, "weight_decay": 1e-2, "optimizer": "adamw",
                                "schedule": "cosine"}, metrics=metrics)
