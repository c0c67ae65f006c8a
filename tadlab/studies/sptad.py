"""Notebook 05's headline: SP-TAD (:mod:`tadlab.models.sptad`, the model and recipe of :mod:`tadlab.sptad_study`:
S = 4 stages, N = 30 proposals, one-to-one assignment, :data:`~tadlab.sptad_study.LONG_EPOCHS` epochs at lr 3e-3,
batch 8) on the worlds and seeds of notebook 01's baselines (``standard_world("thumos", profile, seed)``, seeds
:data:`~tadlab.experiments.HEADLINE_SEEDS`), so its rows pair with ``results/01_baselines.json``'s "thumos: ..."
rows seed by seed (:func:`tadlab.experiments.paired_difference`).

- ``05_headline.json``: one job, ``"thumos"``, per seed: one model trained, measured on testing twice: decoded as
  the paper decodes (no NMS), row "SP-TAD", and the same model decoded with Soft-NMS, row "SP-TAD + Soft-NMS".
  Seed 0's model ships (name "sptad", preset "thumos"; :mod:`tadlab.pretrained`).

- ``05_windows.json``: one job, ``"thumos_windows"``, per seed: SP-TAD as the paper runs it on THUMOS14 (Sec. 4.1),
  on sliding windows (:mod:`tadlab.windows`; :data:`WINDOWS`), trained on the windows of the training videos and
  measured on whole testing videos, the windows' detections merged by Soft-NMS; row "SP-TAD (windows)", and the same
  model without the action head's scores, row "SP-TAD (windows), no action scores".

- ``05_window_recipe.json``: the clips' recipe on the validation videos, seeds :data:`WINDOW_RECIPE_SEEDS`: one
  job per learning rate of :data:`WINDOW_RECIPE_LRS` (the rest of the recipe as the headline's: cosine schedule
  after a one-epoch warm-up, batch 8, :data:`WINDOW_EPOCHS`), rows "SP-TAD (windows), lr X"; and job
  ``"windows_as_printed"``, the paper's own recipe (:data:`~tadlab.sptad_study.PAPER_RECIPE`: 16 epochs, lr 1e-4
  then 1e-5 after epoch 12, batch 16, no warm-up, no clipping), row :data:`AS_PRINTED_ROW`. Each row carries its
  training loss per epoch, so a collapse shows. :func:`chosen_window_lr` applies the rule fixed before looking.

- ``05_window_followup.json``: the same grid one step further and the paper's training stride, validation, seeds
  :data:`WINDOW_RECIPE_SEEDS`: job ``"windows_lr0.01"`` (lr 1e-2: the first sweep's best rate was its top), and
  the headline's recipe with the windows cut every 4 snippets (the paper's 3 s) instead of 8, job
  ``"windows_stride4"`` (twice the windows, so twice the steps per epoch), job ``"windows_stride4_half_epochs"``
  (half the epochs: the same number of steps as the headline) and job ``"windows_twice_epochs"`` (the headline's
  windows for twice the epochs: twice the steps), splitting denser windows from more steps.

- ``05_recipe_validation.json``: the whole-video headline's learning rate on the validation videos, seeds
  :data:`WHOLE_RECIPE_SEEDS`: one job per rate of :data:`~tadlab.sptad_study.RECIPE_LRS`, each training the
  headline's model and schedule (:data:`~tadlab.sptad_study.LONG_EPOCHS`), rows "SP-TAD, lr X" with the training
  loss per epoch. :func:`chosen_whole_lr` applies the rule (the highest mean validation average mAP).

- ``05_stages.json`` and ``05_variants.json``: one change to the headline's whole-video model per job
  (:data:`~tadlab.sptad_study.VARIANTS`, :func:`~tadlab.sptad_study.job_rows`), on the headline's worlds over
  :data:`~tadlab.experiments.ABLATION_SEEDS`, so each row pairs with ``05_headline.json``'s "SP-TAD" row (S = 4)
  seed by seed: the stage sweep (Table 6's shape: S = 1, 2, 6) and the matching (one-to-many, also with
  Soft-NMS), N (10, 60), the pyramid (on the last layer, the last layer alone; Table 5's shape) and twice the
  epochs.
"""
from __future__ import annotations

from typing import NamedTuple

from tadlab.eval import THUMOS_TIOU
from tadlab.experiments import ABLATION_SEEDS, HEADLINE_SEEDS, detection_metrics, on_seeds, standard_world
from tadlab.pretrained import check_metrics
from tadlab.sptad_study import (LONG_EPOCHS, MODEL, PAPER_RECIPE, RECIPE, RECIPE_LRS, TRAIN, VARIANTS,
                                duplicate_share, duration, job_rows, measure, train_sptad)
from tadlab.studies import Result, export_model
from tadlab.train import fit, predict
from tadlab.utils import seed_everything

NOTEBOOK = "05"
PRESET = "thumos"
ROW, SOFT_NMS_ROW = "SP-TAD", "SP-TAD + Soft-NMS"
SEEDS = HEADLINE_SEEDS  # the seeds of notebook 01's baselines
SHIPPED_SEEDS = (0,)
FACTORY = "tadlab.models.sptad:SPTAD"

WINDOWS_JOB = "thumos_windows"
WINDOW_ROW, WINDOW_NO_ACTION_ROW = "SP-TAD (windows)", "SP-TAD (windows), no action scores"
# The paper's THUMOS14 clips are 256 frames at 10 fps (25.6 s), cut every 30 frames for training and every 128 for
# inference. The thumos world's snippets last 0.8 s at its median duration (205 s over 256 snippets), so a clip is 32
# snippets; training stride 8 (6.4 s, the paper's 3 s would be 4: half the windows, a CPU choice that
# 05_window_followup.json measures: 4 pays only with the twice as many steps it brings, by less than two seeds tell),
# inference stride 16 (half a window, as 128 of 256). Features are centred per video before cutting (a window alone
# cannot tell the per-video offset from an action that fills it). Epochs and warm-up: chosen on validation at "ci" (seed
# 17, S = 2: lr 1e-3, 20 epochs; validation average mAP 0.068 against 0.001 for whole videos). The learning rate per
# profile: at "ci" (and "smoke") that choice; at "full" the choice of 05_window_recipe.json on the full worlds'
# validation videos (seeds 0 and 1, chosen_window_lr).
WINDOWS = dict(length=32, train_stride=8, test_stride=16, min_ioa=0.5)
WINDOW_MODEL = {**MODEL, "center_features": False}
WINDOW_TRAIN = {**TRAIN, "warmup_epochs": 1}
WINDOW_LR = {"smoke": 1e-3, "ci": 1e-3, "full": 3e-3}
WINDOW_EPOCHS = {"smoke": 1, "ci": 20, "full": 20}

# The clips' learning rate at "full", chosen on validation over two worlds: a log grid around the ci choice (1e-3)
# that takes in the paper's 1e-4; the rule, fixed before looking: the highest mean validation average mAP.
WINDOW_RECIPE_LRS = (1e-4, 3e-4, 1e-3, 3e-3)
WINDOW_RECIPE_SEEDS = (0, 1)
AS_PRINTED_JOB, AS_PRINTED_ROW = "windows_as_printed", "SP-TAD (windows), the paper's recipe"
AS_PRINTED_EPOCHS = {"smoke": 2, "ci": 8, "full": PAPER_RECIPE["epochs"]}  # the step after 3/4 of them, as 12 of 16


def window_recipe_job(lr: float) -> str:
    return f"windows_lr{lr:g}"


WINDOW_RECIPE_JOBS = (*map(window_recipe_job, WINDOW_RECIPE_LRS), AS_PRINTED_JOB)
# A second sweep (05_window_followup.json): one rate above the first grid's top, and the paper's training stride at
# the headline's rate, with all its epochs and with half of them (the headline's number of optimiser steps), and the
# headline's stride for twice the epochs (the stride-4 row's number of steps): the 2 x 2 of clips and steps
FOLLOWUP_LRS = (1e-2,)
PAPER_TRAIN_STRIDE = 4


class ClipJob(NamedTuple):
    row: str
    train_stride: int  # snippets between training clips
    epoch_share: float  # of the headline's epochs


STRIDE_JOBS = {
    "windows_stride4": ClipJob("SP-TAD (windows), training stride 4", PAPER_TRAIN_STRIDE, 1.0),
    "windows_stride4_half_epochs": ClipJob("SP-TAD (windows), training stride 4, half the epochs",
                                           PAPER_TRAIN_STRIDE, 0.5),
    "windows_twice_epochs": ClipJob("SP-TAD (windows), twice the epochs", WINDOWS["train_stride"], 2.0)}
FOLLOWUP_JOBS = (*map(window_recipe_job, FOLLOWUP_LRS), *STRIDE_JOBS)
# The whole-video headline's learning rate (RECIPE), chosen on validation at the headline's own epochs
WHOLE_RECIPE_SEEDS = (0, 1)
WHOLE_RECIPE_JOBS = {f"whole_lr{lr:g}": lr for lr in RECIPE_LRS}  # job: learning rate


def whole_recipe_row(lr: float) -> str:
    return f"SP-TAD, lr {lr:g}"


def chosen_whole_lr(stored) -> float:
    """The rule fixed before the sweep: the learning rate of the highest mean validation average mAP (``stored``:
    ``05_recipe_validation.json`` loaded)."""
    return max(RECIPE_LRS, key=lambda lr: stored[whole_recipe_row(lr)].mean())


def window_recipe_row(lr: float) -> str:
    return f"{WINDOW_ROW}, lr {lr:g}"


# One change to the headline model per job (job name: VARIANTS's row), paired with 05_headline.json's S = 4 rows
STAGE_JOBS = {"S=1": "S=1", "S=2": "S=2", "S=6": "S=6"}
VARIANT_JOBS = {"one-to-many": "one-to-many", "N=10": "N=10", "N=60": "N=60",
                "pyramid_last": "pyramid on the last layer", "last_layer_only": "last layer only",
                "twice_epochs": "twice the epochs"}
assert set(STAGE_JOBS.values()) | set(VARIANT_JOBS.values()) <= set(VARIANTS)

RESULTS = [
    Result("05_headline.json", jobs=(PRESET,), seeds=SEEDS,
           meta={"preset": PRESET, "tiou": [round(float(t), 2) for t in THUMOS_TIOU], "model": MODEL,
                 "train": TRAIN, "lr": RECIPE["lr"], "epochs": LONG_EPOCHS["full"],
                 "pairs_with": "01_baselines.json"}),
    Result("05_windows.json", jobs=(WINDOWS_JOB,), seeds=SEEDS,
           meta={"preset": PRESET, "tiou": [round(float(t), 2) for t in THUMOS_TIOU], "model": WINDOW_MODEL,
                 "windows": WINDOWS, "train": WINDOW_TRAIN, "lr": WINDOW_LR["full"], "epochs": WINDOW_EPOCHS["full"],
                 "pairs_with": "01_baselines.json"}),
    *(Result(name, jobs=tuple(jobs), seeds=ABLATION_SEEDS,
             meta={"preset": PRESET, "tiou": [round(float(t), 2) for t in THUMOS_TIOU], "model": MODEL,
                   "train": TRAIN, "lr": RECIPE["lr"], "epochs": LONG_EPOCHS["full"],
                   "variants": {job: VARIANTS[row] for job, row in jobs.items()}, "pairs_with": "05_headline.json"})
      for name, jobs in (("05_stages.json", STAGE_JOBS), ("05_variants.json", VARIANT_JOBS))),
    Result("05_recipe_validation.json", jobs=tuple(WHOLE_RECIPE_JOBS), seeds=WHOLE_RECIPE_SEEDS, subset="validation",
           meta={"preset": PRESET, "model": MODEL, "train": TRAIN, "epochs": LONG_EPOCHS["full"],
                 "rule": "the highest mean validation average mAP over the seeds"}),
    Result("05_window_recipe.json", seeds=WINDOW_RECIPE_SEEDS, subset="validation",
           jobs=WINDOW_RECIPE_JOBS,
           meta={"preset": PRESET, "model": WINDOW_MODEL, "windows": WINDOWS, "train": WINDOW_TRAIN,
                 "epochs": WINDOW_EPOCHS["full"], "as_printed": PAPER_RECIPE,
                 "rule": "the highest mean validation average mAP over the seeds"}),
    Result("05_window_followup.json", seeds=WINDOW_RECIPE_SEEDS, subset="validation", jobs=FOLLOWUP_JOBS,
           meta={"preset": PRESET, "model": WINDOW_MODEL, "windows": WINDOWS, "train": WINDOW_TRAIN,
                 "epochs": WINDOW_EPOCHS["full"], "lr": WINDOW_LR["full"], "paper_train_stride": PAPER_TRAIN_STRIDE,
                 "pairs_with": "05_window_recipe.json"}),
]


def subset_windows(world, subset: str = "testing", stride: int = WINDOWS["test_stride"]) -> list:
    """The :data:`WINDOWS` of ``subset``'s videos, ``stride`` apart (by default the inference stride, as the
    detector cuts them), centred per video, each with the instances it records
    (:func:`~tadlab.windows.crop_windows`; windows without one are left out)."""
    from tadlab.windows import crop_windows

    return crop_windows(world.dataset(subset), WINDOWS["length"], stride, WINDOWS["min_ioa"], center_features=True)


def train_windows(world, seed: int, profile: str, device="cpu", recipe: dict | None = None,
                  clips: list | None = None, **overrides):
    """SP-TAD of :data:`WINDOW_MODEL` (with ``overrides``) trained on the :data:`WINDOWS` of ``world``'s training
    videos (``clips``: the caller's, e.g. cut at another stride; by default cut here, every
    ``WINDOWS["train_stride"]`` snippets) for :data:`WINDOW_EPOCHS` of ``profile`` at its :data:`WINDOW_LR` with
    :data:`WINDOW_TRAIN` (``recipe``: :func:`tadlab.train.fit`'s options in their place, ``epochs`` and ``lr``
    included); returns ``(detector, history)``, the detector a :class:`~tadlab.windows.SlidingWindowDetector` that
    runs it on whole videos."""
    from tadlab.models.sptad import SPTAD
    from tadlab.windows import SlidingWindowDetector

    windows = subset_windows(world, "training", WINDOWS["train_stride"]) if clips is None else clips
    seed_everything(seed)
    model = SPTAD(world.feature_dim, world.num_classes, **{**WINDOW_MODEL, **overrides})
    recipe = {"epochs": WINDOW_EPOCHS[profile], "lr": WINDOW_LR[profile], **WINDOW_TRAIN} if recipe is None else recipe
    history = fit(model, windows, seed=seed, device=device, progress=False, **recipe)
    return SlidingWindowDetector(model, WINDOWS["length"], WINDOWS["test_stride"], center_features=True), history


def window_recipe(job: str, profile: str) -> dict:
    """:func:`tadlab.train.fit`'s options of a ``05_window_recipe.json`` or ``05_window_followup.json`` job at
    ``profile``."""
    if job == AS_PRINTED_JOB:
        epochs = AS_PRINTED_EPOCHS[profile]
        return {**PAPER_RECIPE, "epochs": epochs, "step_epoch": epochs * 3 // 4}
    if job in STRIDE_JOBS:
        epochs = max(1, round(WINDOW_EPOCHS[profile] * STRIDE_JOBS[job].epoch_share))
        return {"epochs": epochs, "lr": WINDOW_LR[profile], **WINDOW_TRAIN}
    for lr in (*WINDOW_RECIPE_LRS, *FOLLOWUP_LRS):
        if job == window_recipe_job(lr):
            return {"epochs": WINDOW_EPOCHS[profile], "lr": lr, **WINDOW_TRAIN}
    raise ValueError(f"{job!r} is not a job of 05_window_recipe.json or 05_window_followup.json")


def run_window_recipe(job: str, seed: int, profile: str, device="cpu") -> dict:
    """One recipe of ``05_window_recipe.json`` or ``05_window_followup.json``: the windowed SP-TAD trained with it,
    on the validation videos, with its training loss per epoch (a collapse shows as a loss that stops falling) and
    its number of optimiser steps."""
    recipe = window_recipe(job, profile)
    stride = STRIDE_JOBS[job].train_stride if job in STRIDE_JOBS else WINDOWS["train_stride"]
    world = standard_world(PRESET, profile, seed)
    clips = subset_windows(world, "training", stride)
    detector, history = train_windows(world, seed, profile, device, recipe=recipe, clips=clips)
    row = (AS_PRINTED_ROW if job == AS_PRINTED_JOB else STRIDE_JOBS[job].row if job in STRIDE_JOBS
           else window_recipe_row(recipe["lr"]))
    metrics = detection_metrics(detector, world, THUMOS_TIOU, "validation", device)
    losses = [float(loss) for loss in history.train["total"]]
    steps = recipe["epochs"] * -(-len(clips) // recipe["batch_size"])
    return {row: {**metrics, "final_loss": losses[-1], "loss_per_epoch": losses, "epochs": recipe["epochs"],
                  "train_stride": stride, "training_windows": len(clips), "steps": steps},
            "meta": {"recipe": recipe, "train_stride": stride}}


def chosen_window_lr(stored: dict) -> float:
    """The learning rate whose row has the highest mean average mAP in ``stored`` (``05_window_recipe.json`` as
    :func:`tadlab.experiments.load_runs` returns it, or its rows and ``05_window_followup.json``'s together: then
    :data:`FOLLOWUP_LRS` too; ties: the lower rate)."""
    rates = [lr for lr in (*WINDOW_RECIPE_LRS, *FOLLOWUP_LRS) if window_recipe_row(lr) in stored]
    missing = [lr for lr in WINDOW_RECIPE_LRS if lr not in rates]
    if missing:
        raise KeyError(f"the recipe rows of rates {missing} are missing (05_window_recipe.json's rows)")
    return max(rates, key=lambda lr: (stored[window_recipe_row(lr)].mean(), -lr))


def window_measure(detector, world, subset: str = "testing", device="cpu", **detect_kwargs) -> dict:
    """A windowed SP-TAD on ``subset``: average mAP and mAP per tIoU on whole videos (the windows' detections merged
    by Soft-NMS; ``detect_kwargs`` go to the model's own ``detect`` within each window, ``nms={}`` a Soft-NMS
    there too), and on the windows themselves (what the model outputs before any merge): the duplicate share
    (:func:`~tadlab.sptad_study.duplicate_share`) and :func:`~tadlab.sptad_study.diagnose`."""
    from tadlab.sptad_study import diagnose, duplicate_share

    windows = subset_windows(world, subset)
    metrics = detection_metrics(detector, world, THUMOS_TIOU, subset, device, **detect_kwargs)
    clip_detections = predict(detector.model, windows, device=device, **detect_kwargs)
    return {**metrics, "duplicates": duplicate_share(clip_detections),
            **diagnose(detector.model, world, subset, device, items=windows)}


def run_windows(seed: int, profile: str, device="cpu") -> dict:
    """The ``"thumos_windows"`` job: one windowed SP-TAD, measured on testing with and without action scores."""
    from tadlab.diagnostics import DURATION_EDGES

    world = standard_world(PRESET, profile, seed)
    detector, history = train_windows(world, seed, profile, device)
    extra = {"final_loss": float(history.train["total"][-1]), "epochs": WINDOW_EPOCHS[profile],
             **{f"final_{k}": float(history.train[k][-1]) for k in ("focal", "l1", "giou", "action")}}
    rows = {WINDOW_ROW: {**detection_metrics(detector, world, THUMOS_TIOU, "testing", device,
                                             duration_edges=DURATION_EDGES[PRESET]), **extra},
            WINDOW_NO_ACTION_ROW: {**detection_metrics(detector, world, THUMOS_TIOU, "testing", device,
                                                       action_scores=False), **extra}}
    return {**rows, "meta": {"epochs": WINDOW_EPOCHS[profile], "lr": WINDOW_LR[profile], "windows": WINDOWS}}


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job == WINDOWS_JOB:
        return run_windows(seed, profile, device)
    if job in WINDOW_RECIPE_JOBS or job in FOLLOWUP_JOBS:
        return run_window_recipe(job, seed, profile, device)
    if job in WHOLE_RECIPE_JOBS:
        return run_whole_recipe(job, seed, profile, device)
    variant = {**STAGE_JOBS, **VARIANT_JOBS}.get(job)
    if variant is not None:
        return job_rows(variant, seed, profile, device)
    if job != PRESET:
        jobs = [PRESET, WINDOWS_JOB, *WINDOW_RECIPE_JOBS, *FOLLOWUP_JOBS, *WHOLE_RECIPE_JOBS, *STAGE_JOBS,
                *VARIANT_JOBS]
        raise ValueError(f"unknown job {job!r} of study 'sptad'; its jobs are {jobs}")
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


def run_whole_recipe(job: str, seed: int, profile: str, device="cpu") -> dict:
    """One learning rate of ``05_recipe_validation.json``: the whole-video headline's model and epochs at that rate,
    measured on the validation videos, with its training loss per epoch."""
    lr = WHOLE_RECIPE_JOBS[job]
    world = standard_world(PRESET, profile, seed)
    model, history = train_sptad(world, seed, LONG_EPOCHS[profile], lr, device)
    losses = [float(v) for v in history.train["total"]]
    return {whole_recipe_row(lr): {**measure(model, world, "validation", device), "lr": lr,
                                   "epochs": LONG_EPOCHS[profile], "loss_per_epoch": losses,
                                   "final_loss": losses[-1]}}


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
    seeds = list(headline[ROW].seeds)
    rows = {name: on_seeds(baselines[f"{PRESET}: {name}"], seeds, name=name) for name in BASELINES}
    return {**rows, ROW: headline[ROW], SOFT_NMS_ROW: headline[SOFT_NMS_ROW]}


HEADLINE_VARIANT_ROWS = {ROW: "S=4", SOFT_NMS_ROW: "S=4 + Soft-NMS"}  # the headline is the sweeps' S = 4 point
DIAGNOSIS = ("localised", "best_class_right", "video_class_right")  # sptad_study.diagnose's keys


def ablation_rows(headline: dict, stages: dict, variants: dict) -> dict:
    """``{name: SeedRuns}``: the headline's two rows on the seeds of ``05_stages.json`` (``stages``) renamed "S=4"
    and "S=4 + Soft-NMS" (:data:`HEADLINE_VARIANT_ROWS`), then the rows of ``stages`` and ``variants``
    (``05_variants.json``), all as :func:`tadlab.experiments.load_runs` returns them: every row on the same seeds, so
    any two pair. A ValueError names a row on other seeds."""
    import dataclasses

    seeds = list(next(iter(stages.values())).seeds)
    s4, s4_soft = HEADLINE_VARIANT_ROWS[ROW], HEADLINE_VARIANT_ROWS[SOFT_NMS_ROW]
    plain, soft = on_seeds(headline[ROW], seeds, name=s4), on_seeds(headline[SOFT_NMS_ROW], seeds, name=s4_soft)
    # the proposals' diagnosis does not depend on the NMS: the Soft-NMS row takes its model's (stored once)
    diagnosed = [{**{key: p[key] for key in DIAGNOSIS if key in p}, **m}
                 for p, m in zip(plain.metrics, soft.metrics)]
    rows = {s4: plain, s4_soft: dataclasses.replace(soft, metrics=diagnosed), **stages, **variants}
    uneven = {name: row.seeds for name, row in rows.items() if sorted(row.seeds) != sorted(seeds)}
    if uneven:
        raise ValueError(f"rows on other seeds than {seeds}: {uneven}")
    return rows
