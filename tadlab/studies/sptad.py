"""Notebook 05's headline: SP-TAD (:mod:`tadlab.models.sptad`, the model and recipe of :mod:`tadlab.sptad_study`:
S = 4 stages, N = 30 proposals, one-to-one assignment, :data:`~tadlab.sptad_study.LONG_EPOCHS` epochs at lr 3e-3,
batch 8) on the worlds and seeds of notebook 01's baselines (``standard_world("thumos", profile, seed)``, seeds
:data:`~tadlab.experiments.HEADLINE_SEEDS`), so its rows pair with ``results/01_baselines.json``'s "thumos: ..."
rows seed by seed (:func:`tadlab.experiments.paired_difference`).

- ``05_headline.json``: one job, ``"thumos"``, per seed: one model trained, measured on testing twice: decoded as
  the paper decodes (no NMS), row "SP-TAD", and the same model decoded with Soft-NMS, row "SP-TAD + Soft-NMS".
  Seed 0's model ships (name "sptad", preset "thumos"; :mod:`tadlab.pretrained`).

The other stored rows of notebook 05 (``05_stages.json``, ``05_variants.json``, ``05_sptad.json``,
``05_recipe_validation.json``, ``05_ablations.json``) come from ``scripts/sptad_experiments.py`` on the earlier
worlds (80 testing videos, 3 seeds) and are not rebuilt here.
"""
from __future__ import annotations

from tadlab.eval import THUMOS_TIOU
from tadlab.experiments import HEADLINE_SEEDS, detection_metrics, standard_world
from tadlab.pretrained import check_metrics
from tadlab.sptad_study import LONG_EPOCHS, MODEL, RECIPE, TRAIN, duplicate_share, duration, measure, train_sptad
from tadlab.studies import Result, export_model
from tadlab.train import predict

NOTEBOOK = "05"
PRESET = "thumos"
ROW, SOFT_NMS_ROW = "SP-TAD", "SP-TAD + Soft-NMS"
SEEDS = HEADLINE_SEEDS  # the seeds of notebook 01's baselines
SHIPPED_SEEDS = (0,)
FACTORY = "tadlab.models.sptad:SPTAD"

RESULTS = [
    Result("05_headline.json", jobs=(PRESET,), seeds=SEEDS,
           meta={"preset": PRESET, "tiou": [round(float(t), 2) for t in THUMOS_TIOU], "model": MODEL,
                 "train": TRAIN, "lr": RECIPE["lr"], "epochs": LONG_EPOCHS["full"],
                 "pairs_with": "01_baselines.json"}),
]


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job != PRESET:
        raise ValueError(f"unknown job {job!r} of study 'sptad'; its job is {PRESET!r}")
    world = standard_world(PRESET, profile, seed)
    epochs = LONG_EPOCHS[profile]
    model, history = train_sptad(world, seed, epochs, RECIPE["lr"], device)
    extra = {"final_loss": float(history.train["total"][-1]), "epochs": epochs}
    rows = {ROW: {**measure(model, world, device=device), **extra},
            SOFT_NMS_ROW: {**soft_nms_metrics(model, world, device), **extra}}
    meta = {"epochs": epochs, "lr": RECIPE["lr"]}
    if seed in SHIPPED_SEEDS:
        meta["pretrained"] = [ship(model, seed, profile, epochs, rows, device)]
    return {**rows, "meta": meta}


def soft_nms_metrics(model, world, device="cpu") -> dict:
    """The same model decoded with Soft-NMS (``nms={}``) on testing: average mAP, mAP per tIoU, the duplicate share
    and the per-length breakdown (the proposals and the video-level scores are those of the "SP-TAD" row)."""
    items = list(world.dataset("testing"))
    metrics = detection_metrics(model, world, THUMOS_TIOU, "testing", device, nms={})
    detections = predict(model, items, device=device, nms={})
    return {**metrics, "duplicates": duplicate_share(detections), "duration": duration(detections, items)}


def ship(model, seed: int, profile: str, epochs: int, rows: dict, device) -> dict:
    """Export the trained SP-TAD (decoded without NMS, its "SP-TAD" row) for shipping."""
    world = standard_world(PRESET, profile, seed)
    kwargs = {"feature_dim": world.feature_dim, "num_classes": world.num_classes, **MODEL}
    metrics = {"average_mAP": rows[ROW]["average_mAP"], "soft_nms_average_mAP": rows[SOFT_NMS_ROW]["average_mAP"],
               "check": check_metrics(model, world, THUMOS_TIOU, device)}
    return export_model(model, study_name="sptad", job=PRESET, seed=seed, profile=profile, name="sptad",
                        preset=PRESET, factory=FACTORY, kwargs=kwargs, detect={},
                        world={"preset": PRESET, "profile": profile, "seed": seed},
                        recipe={"lr": RECIPE["lr"], "epochs": epochs, **TRAIN, "optimizer": "adamw",
                                "schedule": "cosine"}, metrics=metrics)


BASELINES = ("naive", "context", "class map grouping")  # notebook 01's rows of results/01_baselines.json


def paired_rows(headline: dict, baselines: dict) -> dict:
    """``{name: SeedRuns}``: notebook 01's "thumos: ..." rows (named without the prefix), restricted to the seeds
    of ``headline``'s rows (the same worlds: a seed draws the world), then ``headline``'s two rows; both as
    :func:`tadlab.experiments.load_runs` returns them. Every row has the same seeds, so any two pair."""
    import dataclasses

    seeds = list(headline[ROW].seeds)
    rows = {}
    for name in BASELINES:
        row = baselines[f"{PRESET}: {name}"]
        missing = [s for s in seeds if s not in row.seeds]
        if missing:
            raise ValueError(f"notebook 01's row {row.name!r} lacks seeds {missing} of the headline")
        rows[name] = dataclasses.replace(row, name=name, seeds=seeds,
                                         metrics=[row.metrics[row.seeds.index(s)] for s in seeds])
    return {**rows, ROW: headline[ROW], SOFT_NMS_ROW: headline[SOFT_NMS_ROW]}
