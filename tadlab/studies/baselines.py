"""Notebook 01's experiments: the three baselines every detector meets (:func:`tadlab.experiments.baseline_rows`:
naive per-snippet, temporal context, class-map grouping), on both presets.

- ``01_recipe_validation.json``: the recipe, chosen on validation (seed 0): a grid of learning rates and epochs
  per preset, each recipe scored by the mean of its three rows (:func:`chosen_recipe` applies the rule);
- ``01_baselines.json``: the three rows on testing over :data:`HEADLINE_SEEDS`, each preset at its chosen recipe,
  with the evaluation's sampling error (a bootstrap over the testing videos) and the breakdown by instance length. Notebooks 04-08 compare with these
  rows (the same worlds and seeds) instead of retraining them;
- ``01_dropout.json``: how much the finding "class-map grouping repairs the single threshold's cuts at dropouts"
  depends on the world's ``dropout`` knob (no real statistic sets it): the three rows on ``"anet"`` worlds whose
  only change is the share of instances with a dropout (:data:`DROPOUTS`), over :data:`ABLATION_SEEDS`.

``01_official_eval.json`` compares ``tadlab.eval`` with the official ActivityNet ``eval_detection.py`` (Python 2.7,
outside this project) on the shipped context models' testing detections: the workflow's optional rule
``official_eval`` (``scripts/official_eval.py``, given a checkout and an interpreter) makes it, not a job of this
study; :func:`official_eval_inputs` writes the files both read.
"""
from __future__ import annotations

import json

from tadlab.diagnostics import DURATION_EDGES
from tadlab.eval import ANET_TIOU, THUMOS_TIOU
from tadlab.experiments import ABLATION_SEEDS, BASELINE_ROWS, HEADLINE_SEEDS, baseline_rows, standard_world
from tadlab.pretrained import check_metrics
from tadlab.studies import Result, export_model, results_dir

NOTEBOOK = "01"
PRESETS = ("thumos", "anet")
TIOU = {"thumos": THUMOS_TIOU, "anet": ANET_TIOU}  # each benchmark's thresholds
# The grid on validation, (lr, epochs) per preset (shortened at "smoke" and "ci": epochs_at)
RECIPES = {"thumos": ((1e-3, 25), (3e-3, 25), (1e-2, 25), (3e-3, 12), (3e-3, 50), (3e-3, 100)),
           "anet": ((1e-3, 25), (3e-3, 25), (1e-2, 25), (3e-3, 12), (3e-3, 50))}
BOOTSTRAP = 100  # resamplings of the testing videos for the evaluation's sampling error (at "full")
# Shares of "anet" instances with a dropout: none, the preset's (0.5), every one. The world draws the same layout
# and the same random numbers for every share (an instance has a dropout when its uniform draw falls under the
# share), so a higher share adds dropouts to the same videos and changes nothing else.
DROPOUTS = (0.0, 0.5, 1.0)


def recipe_job(preset: str, lr: float, epochs: int) -> str:
    return f"{preset}_lr{lr:g}_e{epochs}"


def dropout_job(dropout: float) -> str:
    return f"anet_dropout{dropout:g}"


def dropout_row(dropout: float, row: str) -> str:
    return f"anet, dropout {dropout:g}: {row}"


RESULTS = [
    Result("01_recipe_validation.json", seeds=(0,), subset="validation",
           jobs=tuple(recipe_job(p, lr, e) for p in PRESETS for lr, e in RECIPES[p])),
    Result("01_baselines.json", jobs=PRESETS, seeds=HEADLINE_SEEDS, needs=("01_recipe_validation.json",),
           meta={"tiou": {p: [round(float(t), 2) for t in TIOU[p]] for p in PRESETS}}),
    Result("01_dropout.json", jobs=tuple(dropout_job(d) for d in DROPOUTS), seeds=ABLATION_SEEDS,
           needs=("01_recipe_validation.json",),
           meta={"preset": "anet", "dropouts": list(DROPOUTS), "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
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
    for dropout in DROPOUTS:
        if job == dropout_job(dropout):  # one change: the share of instances with a dropout
            rows = baseline_rows(standard_world("anet", profile, seed, dropout=dropout), ANET_TIOU, seed=seed,
                                 device=device, **chosen_recipe("anet", profile))
            return {dropout_row(dropout, row): metrics for row, metrics in rows.items()}
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


# ------------------------------------------------------------------ the official ActivityNet evaluation, once
OFFICIAL_EVAL = {"repository": "https://github.com/activitynet/ActivityNet", "file": "Evaluation/eval_detection.py"}


def official_eval_inputs(preset: str, folder, device="cpu") -> dict:
    """Write the ground truth and the testing results of the shipped context model of ``preset`` (seed 0, on
    ``standard_world(preset, "full", 0)``) as ``folder/ground_truth_PRESET.json`` and ``folder/results_PRESET.json``
    in the form the official ``eval_detection.py`` reads (it also wants a ``taxonomy`` field), and return
    ``tadlab.eval``'s metrics of those very files (subset "testing", the preset's thresholds)."""
    from pathlib import Path

    from tadlab import pretrained
    from tadlab.data.schema import ground_truth_to_json, results_to_json
    from tadlab.eval import evaluate_detection
    from tadlab.train import detection_results

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    world = standard_world(preset, "full", 0)
    model = pretrained.load("context", preset=preset, seed=0, device=device)
    scored, results = detection_results(model, world.dataset("testing"), world.ground_truth, world.class_names,
                                        device=device, **pretrained.entry("context", preset, 0)["detect"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truth_path, results_path = folder / f"ground_truth_{preset}.json", folder / f"results_{preset}.json"
    truth_path.write_text(json.dumps({**ground_truth_to_json(scored, world.ground_truth["version"]),
                                      "taxonomy": []}) + "\n")
    results_path.write_text(json.dumps(results_to_json(results)) + "\n")
    metrics = evaluate_detection(truth_path, results_path, tiou_thresholds=TIOU[preset], subset="testing")
    return {"average_mAP": float(metrics.average_mAP), "mAP": [float(m) for m in metrics.mAP],
            "tiou_thresholds": [float(t) for t in metrics.tiou_thresholds], "subset": "testing",
            "videos": len(scored), "predictions": sum(len(r.scores) for r in results.values())}


def save_official_comparison(path, measured: dict, **meta):
    """Store ``{preset: {"tadlab": metrics, "official": metrics}}`` as rows "PRESET: tadlab.eval" and "PRESET:
    official eval_detection.py" (seed 0, subset "testing"), with ``meta`` (repository, commit, file, command) and
    the largest absolute difference of average mAP and per-threshold mAP over the presets."""
    import numpy as np

    from tadlab.experiments import SeedRuns, save_runs

    rows, gaps = [], []
    for preset, pair in measured.items():
        if set(pair) != {"tadlab", "official"}:
            raise ValueError(f"{preset}: expected the metrics of 'tadlab' and 'official', got {sorted(pair)}")
        ours, theirs = pair["tadlab"], pair["official"]
        if len(ours["mAP"]) != len(theirs["mAP"]):
            raise ValueError(f"{preset}: {len(ours['mAP'])} thresholds in tadlab's metrics, "
                             f"{len(theirs['mAP'])} in the official ones")
        gaps += [abs(ours["average_mAP"] - theirs["average_mAP"])]
        gaps += list(np.abs(np.subtract(ours["mAP"], theirs["mAP"])))
        rows += [SeedRuns(f"{preset}: tadlab.eval", [0], [ours]),
                 SeedRuns(f"{preset}: official eval_detection.py", [0], [theirs])]
    return save_runs(path, rows, overwrite=True, notebook=NOTEBOOK, **meta,
                     largest_difference=float(max(gaps)))
