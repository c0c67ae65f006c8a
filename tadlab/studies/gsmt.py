"""Notebook 04's experiments: GSMT (global segmentation masks, Nag et al.) on the headline worlds.

- ``04_headline.json``: GSMT trained on ``standard_world("anet", profile, seed)`` over :data:`HEADLINE_SEEDS`, the
  worlds and seeds of notebook 01's ``01_baselines.json``, so its rows pair with the baselines seed by seed. Two
  rows from one trained model: ``"anet: GSMT"``, decoded by its masks (the paper's way, Sec. 3.3: "long" decoding
  on ActivityNet, class-aware Soft-NMS), and ``"anet: GSMT, class-map decoding"``, the same model's class map
  grouped by :mod:`tadlab.grouping` as notebook 01's third baseline decodes (one change: the decoder). Each row
  holds the mAP curve, the evaluation's sampling error and the breakdown by instance length, like the baselines';
  the masks row also the class map's and masks' quality on testing and on the training videos
  (:func:`tadlab.diagnostics.mask_quality`). Seed 0's model ships (``tadlab.pretrained.load("gsmt", "anet")``).
- ``04_positional.json``: GSMT Table 13 on the same worlds over :data:`ABLATION_SEEDS`: the headline GSMT with one
  change, its positional encoding (none, the paper's default and best row; learned; fixed sinusoidal, the recipe's),
  one job per encoding, each decoded by its masks and by its class map (rows "anet, positional P: GSMT" and
  "anet, positional P: GSMT, class-map decoding"). The "fixed" job retrains the headline's model of that seed.
- ``04_oracles.json``: GSMT Table 6's oracles on the thumos worlds over :data:`ORACLE_SEEDS` (job
  ``"thumos_oracles"``; the model of notebook 08's "thumos: GSMT" row, retrained; read by notebook 08): the
  trained GSMT decoded by its masks with one half replaced by the ground truth (:data:`ORACLES`). The true masks
  come twice: as Table 6 (background snippets' columns empty, which also says where no action is) and on the
  instance snippets only (background columns as predicted), which separates the masks' shapes from that
  actionness oracle. A true class map ties every foreground snippet at 1, so those rows let every snippet propose
  (M1 = T), and so does the row they are measured against ("GSMT, M1 = T").

- ``04_recipe_validation.json``: the recipe sweep (:data:`RECIPE_SWEEP`, one job per row: epochs and the mask
  loss's weight) on the validation videos of the headline's anet world of seed 0; :func:`chosen_recipe` applies the
  rule (the best validation average mAP within :data:`EPOCH_BUDGET` epochs).
- ``04_ablations.json``: notebook 04's section 6 on the headline's worlds, seeds :data:`ABLATION_SEEDS` (so every
  row pairs with the headline's): one job per change of :data:`ABLATIONS` (the mask branch, the embedding, three
  times the training videos, the mask loss's form), and ``"anet_readings"``: the headline's model retrained and
  read with :data:`ORACLES` and with both sources pooled (:func:`ablation_rows`).

The recipe (:func:`gsmt_options`, :data:`TRAIN`, :data:`EPOCHS`) is the rule's choice on ``04_recipe_validation.json``
(mask weight 1, 50 epochs; notebook 04 prints the check). The positional encoding was never chosen on validation
(``04_positional.json`` measures it on testing, which may not choose it). Deviations from the paper, for a CPU and a
few hundred training videos: width 64, one encoder layer, dropout 0.3, AdamW (lr 3e-3, batch 16, cosine, weight
decay 1e-2, gradient clipping at 1) for 50 epochs instead of SGD (lr 1e-4, batch 200) for 15; the fixed sinusoidal
positional encoding (GSMT Table 13's best row has none; the synthetic features carry no trace of position); each
video's per-channel mean subtracted (``center_features``, not in the paper).
"""
from __future__ import annotations

from tadlab.diagnostics import DURATION_EDGES, mask_quality
from tadlab.eval import ANET_TIOU, THUMOS_TIOU
from tadlab.experiments import ABLATION_SEEDS, HEADLINE_SEEDS, detection_metrics, standard_world
from tadlab.models.gsmt import PAPER_POSITIONAL
from tadlab.pretrained import check_metrics
from tadlab.studies import Result, export_model

NOTEBOOK = "04"
TIOU = {"thumos": THUMOS_TIOU, "anet": ANET_TIOU}
DECODING = {"anet": "long", "thumos": "short"}  # Sec. 3.3 (THUMOS: chosen per model on validation, mask_decoding)
# The recipe of notebook 04 (the rule's choice on validation, results/04_recipe_validation.json)
RECIPE = {"mask_weight": 1.0, "epochs": 50}
# "ci" (the live run of notebook 04, 72 thumos or 90 anet training videos): 80 epochs at batch 4, chosen on the
# validation videos of the thumos ci world of seed 17 (average mAP decoded by masks: 0.000 at the full recipe's
# batch 16 and 30 epochs, 0.008 at batch 4 and 30 epochs, 0.047 at 60, 0.103 at 80): a few hundred steps are too
# few for the masks to learn where their instance is. "smoke": seconds, to show that every cell runs.
EPOCHS = {"smoke": 2, "ci": 80, "full": RECIPE["epochs"]}
HIDDEN = {"smoke": 16, "ci": 64, "full": 64}
TRAIN = {"batch_size": 16, "lr": 3e-3, "weight_decay": 1e-2, "clip_grad_norm": 1.0, "optimizer": "adamw",
         "schedule": "cosine"}
BATCH = {"smoke": TRAIN["batch_size"], "ci": 4, "full": TRAIN["batch_size"]}
BOOTSTRAP = 100  # resamplings of the testing videos for the evaluation's sampling error (at "full")
SHIPPED_SEEDS = (0,)
FACTORY = "tadlab.models.gsmt:GSMT"
POSITIONAL = ("none", "learned", "fixed")  # GSMT Table 13's rows (the recipe's is "fixed")
# GSMT Table 6's oracles: row -> oracle_outputs' options (None: as predicted) and whether every snippet proposes
ORACLES = {
    "GSMT": (None, False),
    "GSMT, M1 = T": (None, True),
    "GSMT, true class map": ({"classes": True}, True),
    "GSMT, true masks on instance snippets": ({"masks": True, "keep_background_masks": True}, False),
    "GSMT, true masks": ({"masks": True}, False),
    "GSMT, true class map and masks": ({"classes": True, "masks": True}, True),
}
ORACLE_JOBS = ("thumos_oracles",)  # where GSMT falls furthest below its paper (notebook 08); anet: anet_readings
ORACLE_SEEDS = (0, 1)  # two of the headline's seeds (the oracles' rows differ by far more than the seeds do)
# The recipe sweep (validation videos of the anet world of seed 0): job -> (row, setting). Epochs are the full
# profile's; other profiles scale them by EPOCHS[profile] / RECIPE["epochs"] (so the smoke DAG stays seconds).
RECIPE_SWEEP = {
    "recipe_mask1_epochs25": ("mask weight 1, 25 epochs", {"mask_weight": 1.0, "epochs": 25}),
    "recipe_mask1_epochs50": ("mask weight 1, 50 epochs", {"mask_weight": 1.0, "epochs": 50}),
    "recipe_mask10_epochs50": ("mask weight 10, 50 epochs", {"mask_weight": 10.0, "epochs": 50}),
    "recipe_mask1_epochs100": ("mask weight 1, 100 epochs", {"mask_weight": 1.0, "epochs": 100}),
}
EPOCH_BUDGET = 50  # the longest training the rule may choose (what one CPU thread affords per seed and ablation)
# Notebook 04, section 6: the headline GSMT with one change per job (row, change), on the headline's worlds and
# its first seeds (ABLATION_SEEDS), so every row pairs with 04_headline.json's; "training_factor" is the world's.
ABLATIONS = {
    "anet_no_mask_branch": ("without the mask branch", {"mask_branch": False}),
    "anet_cnn": ("1D CNN (fixed positions)", {"embedding": "cnn"}),
    "anet_training_x3": ("×3 training videos", {"training_factor": 3}),
    "anet_iou": ("IoU + dice", {"mask_loss": "iou"}),
    "anet_iou_l2": ("IoU + dice + λ·L2", {"mask_loss": "iou", "mask_l2_penalty": True}),
    "anet_biou": ("bIoU + dice", {"mask_l2_penalty": False}),
    "anet_bce": ("BCE", {"mask_loss": "bce"}),
}
BOTH_SOURCES = "GSMT, both sources"  # the headline model's detections from its masks and its class map pooled

RESULTS = [
    Result("04_headline.json", jobs=("anet",), seeds=HEADLINE_SEEDS,
           meta={"recipe": RECIPE, "recipe_chosen_on": "results/04_recipe_validation.json (validation, seed 0)",
                 "baselines": "results/01_baselines.json (the same worlds and seeds)",
                 "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
    Result("04_positional.json", jobs=tuple(f"anet_positional_{p}" for p in POSITIONAL), seeds=ABLATION_SEEDS,
           meta={"recipe": RECIPE, "positional": list(POSITIONAL), "paper_table_13": PAPER_POSITIONAL,
                 "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
    Result("04_oracles.json", jobs=ORACLE_JOBS, seeds=ORACLE_SEEDS,
           meta={"recipe": RECIPE, "oracles": {row: options for row, (options, _) in ORACLES.items()},
                 "every_snippet_proposes": [row for row, (_, every) in ORACLES.items() if every]}),
    Result("04_recipe_validation.json", jobs=tuple(RECIPE_SWEEP), seeds=(0,), subset="validation",
           meta={"preset": "anet", "epoch_budget": EPOCH_BUDGET,
                 "sweep": {row: setting for row, setting in RECIPE_SWEEP.values()}}),
    Result("04_ablations.json", jobs=(*ABLATIONS, "anet_readings"), seeds=ABLATION_SEEDS,
           meta={"preset": "anet", "recipe": RECIPE, "changes": {row: change for row, change in ABLATIONS.values()},
                 "readings": [*ORACLES, BOTH_SOURCES], "headline": "results/04_headline.json (the same seeds)",
                 "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
]


def train_options(profile: str) -> dict:
    """:data:`TRAIN` with the batch size of ``profile`` (:data:`BATCH`)."""
    return {**TRAIN, "batch_size": BATCH[profile]}


def gsmt_options(profile: str, **change) -> dict:
    """GSMT's keyword arguments (besides the world's sizes) at ``profile``, with ``change``."""
    return {"hidden": HIDDEN[profile], "heads": 4, "layers": 1, "positional": "fixed", "center_features": True,
            "dropout": 0.3, "mask_weight": RECIPE["mask_weight"], **change}


def train_gsmt(world, seed: int, profile: str, device="cpu", epochs: int | None = None, **change):
    """A GSMT trained on ``world``'s training videos with the recipe (``change``: other model options)."""
    from tadlab.models.gsmt import GSMT
    from tadlab.train import fit
    from tadlab.utils import seed_everything

    seed_everything(seed)  # the same initial weights for every row of a seed
    model = GSMT(world.feature_dim, world.num_classes, world.num_snippets, **gsmt_options(profile, **change))
    history = fit(model, world.dataset("training"), epochs=EPOCHS[profile] if epochs is None else epochs, seed=seed,
                  device=device, progress=False, **train_options(profile))
    return model, history


def mask_detect(preset: str, decoding: str | None = None) -> dict:
    """``detect`` options of the paper's decoding: the masks, "long" (ActivityNet) or "short", Soft-NMS per preset."""
    return {"source": "masks", "decoding": decoding or DECODING[preset], "nms": preset}


def class_map_detect(preset: str) -> dict:
    """``detect`` options of class-map grouping (the third baseline's decoder) on GSMT's class map."""
    return {"source": "class_map", "nms": preset}


def mask_decoding(model, world, device="cpu") -> str:
    """ActivityNet: "long"; THUMOS: the better of "long" and "short" on the validation videos."""
    if world.preset == "anet":
        return "long"
    scores = {d: detection_metrics(model, world, TIOU[world.preset], subset="validation", device=device,
                                   **mask_detect(world.preset, d))["average_mAP"] for d in ("long", "short")}
    return max(scores, key=scores.get)


def headline_rows(model, world, device="cpu", bootstrap: int = 0, duration: bool = True) -> dict:
    """``{"GSMT": metrics, "GSMT, class-map decoding": metrics}`` of a trained GSMT on ``world``'s testing videos."""
    preset = world.preset
    decoding = mask_decoding(model, world, device)
    measure = {"device": device, "bootstrap": bootstrap, "duration_edges": DURATION_EDGES[preset] if duration else None}
    masks = detection_metrics(model, world, TIOU[preset], **measure, **mask_detect(preset, decoding))
    quality = {**mask_quality(model, world.dataset("testing"), device=device),
               **{f"train_{k}": v for k, v in mask_quality(model, world.dataset("training"), device=device).items()}}
    class_map = detection_metrics(model, world, TIOU[preset], **measure, **class_map_detect(preset))
    return {"GSMT": {**masks, "decoding": decoding, "training_videos": len(world.dataset("training")), **quality},
            "GSMT, class-map decoding": class_map}


def positional_row(positional: str, row: str = "GSMT") -> str:
    return f"anet, positional {positional}: {row}"


def oracle_rows(model, world, device="cpu") -> dict:
    """``{row: metrics}`` of :data:`ORACLES` for a trained GSMT on ``world``'s testing videos, decoded by its masks
    as its headline row (``mask_decoding``); each row's metrics as :func:`tadlab.diagnostics.evaluate_outputs`."""
    from tadlab.diagnostics import evaluate_outputs

    decoding = mask_decoding(model, world, device)
    rows = {}
    for row, (options, every_snippet) in ORACLES.items():
        transform = None if options is None else lambda outputs, batch, o=options: model.oracle_outputs(
            outputs, batch, **o)
        detect = {**mask_detect(world.preset, decoding), **({"top_snippets": world.num_snippets} if every_snippet
                                                            else {})}
        rows[row] = {**evaluate_outputs(model, world, TIOU[world.preset], transform, device=device, **detect),
                     "decoding": decoding}
    return rows


def sweep_epochs(epochs: int, profile: str) -> int:
    """A recipe row's epochs (given at "full") at ``profile``: scaled with the profile's own epochs, at least 1."""
    return max(1, round(epochs * EPOCHS[profile] / RECIPE["epochs"]))


def chosen_recipe(stored) -> tuple[str, dict]:
    """The rule fixed before the sweep ran: the highest validation average mAP among the rows of at most
    :data:`EPOCH_BUDGET` epochs. ``stored``: ``04_recipe_validation.json`` loaded (:func:`load_runs`); returns the
    row's name and its setting (:data:`RECIPE_SWEEP`)."""
    settings = dict(RECIPE_SWEEP.values())
    affordable = [name for name in stored if settings[name]["epochs"] <= EPOCH_BUDGET]
    chosen = max(affordable, key=lambda name: stored[name].mean())
    return chosen, settings[chosen]


def ablation_rows(job: str, seed: int, profile: str, device="cpu") -> dict:
    """One job of ``04_ablations.json``: ``{row: metrics}`` on the testing videos of the anet world of ``seed``.

    A change of :data:`ABLATIONS` trains the headline GSMT with that one change and decodes it by its masks (by its
    class map when it has none), with the mask quality on testing; the embedding and the bigger world are also
    decoded by their class map. ``"anet_readings"`` retrains the headline model itself and reads it with GSMT Table
    6's oracles (:data:`ORACLES`, its "GSMT" row repeats the headline's) and with both sources pooled."""
    if job == "anet_readings":
        world = standard_world("anet", profile, seed)
        model, _ = train_gsmt(world, seed, profile, device)
        rows = oracle_rows(model, world, device)
        rows[BOTH_SOURCES] = detection_metrics(model, world, ANET_TIOU, device=device,
                                               **{**mask_detect("anet"), "source": "both"})
        return rows
    name, change = ABLATIONS[job]
    change = dict(change)
    factor = change.pop("training_factor", 1)
    world = standard_world("anet", profile, seed, training_factor=factor)
    model, history = train_gsmt(world, seed, profile, device, **change)
    has_masks = change.get("mask_branch", True)
    detect = mask_detect("anet") if has_masks else class_map_detect("anet")
    rows = {name: {**detection_metrics(model, world, ANET_TIOU, device=device, **detect),
                   **mask_quality(model, world.dataset("testing"), device=device),
                   "training_videos": len(world.dataset("training")), "final_loss": history.train["total"][-1]}}
    if has_masks and ("embedding" in change or factor > 1):  # a question of its own for these two
        rows[f"{name}, class-map decoding"] = detection_metrics(model, world, ANET_TIOU, device=device,
                                                                **class_map_detect("anet"))
    return rows


def recipe_rows(job: str, seed: int, profile: str, device="cpu") -> dict:
    """One row of the recipe sweep (:data:`RECIPE_SWEEP`) on the validation videos of the anet world of ``seed``:
    average mAP decoded by the masks, and the class map's and masks' quality there."""
    name, setting = RECIPE_SWEEP[job]
    world = standard_world("anet", profile, seed)
    model, history = train_gsmt(world, seed, profile, device, epochs=sweep_epochs(setting["epochs"], profile),
                                mask_weight=setting["mask_weight"])
    metrics = detection_metrics(model, world, ANET_TIOU, subset="validation", device=device, **mask_detect("anet"))
    return {name: {**metrics, **mask_quality(model, world.dataset("validation"), device=device), **setting,
                   "trained_epochs": sweep_epochs(setting["epochs"], profile),
                   "final_loss": history.train["total"][-1]}}


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job in RECIPE_SWEEP:
        return recipe_rows(job, seed, profile, device)
    if job in ABLATIONS or job == "anet_readings":
        return ablation_rows(job, seed, profile, device)
    if job in ORACLE_JOBS:
        preset = job.removesuffix("_oracles")
        world = standard_world(preset, profile, seed)
        model, _ = train_gsmt(world, seed, profile, device)
        return {f"{preset}: {row}": metrics for row, metrics in oracle_rows(model, world, device).items()}
    for positional in POSITIONAL:
        if job == f"anet_positional_{positional}":  # one change: the positional encoding (Table 13)
            world = standard_world("anet", profile, seed)
            model, _ = train_gsmt(world, seed, profile, device, positional=positional)
            rows = headline_rows(model, world, device, duration=False)
            return {positional_row(positional, row): metrics for row, metrics in rows.items()}
    if job != "anet":
        jobs = (["anet"] + [f"anet_positional_{p}" for p in POSITIONAL] + list(ORACLE_JOBS) + list(RECIPE_SWEEP)
                + list(ABLATIONS) + ["anet_readings"])
        raise ValueError(f"unknown job {job!r} of study 'gsmt'; its jobs are {jobs}")
    world = standard_world(job, profile, seed)
    model, history = train_gsmt(world, seed, profile, device)
    rows = headline_rows(model, world, device, bootstrap=BOOTSTRAP if profile == "full" else 0)
    meta = {"recipe": RECIPE, "epochs": EPOCHS[profile], "training_seconds": history.seconds,
            "final_loss": {k: v[-1] for k, v in history.train.items()}}
    if seed in SHIPPED_SEEDS:
        meta["pretrained"] = [ship(model, job, seed, profile, rows, device)]
    return {**{f"{job}: {row}": metrics for row, metrics in rows.items()}, "meta": meta}


def ship(model, preset: str, seed: int, profile: str, rows: dict, device) -> dict:
    """Export a trained GSMT (decoded by its masks, its "GSMT" row) for shipping."""
    world = standard_world(preset, profile, seed)
    kwargs = {"feature_dim": world.feature_dim, "num_classes": world.num_classes,
              "num_snippets": world.num_snippets, **gsmt_options(profile)}
    detect = mask_detect(preset, rows["GSMT"]["decoding"])
    metrics = {"average_mAP": rows["GSMT"]["average_mAP"],
               "class_map_average_mAP": rows["GSMT, class-map decoding"]["average_mAP"],
               "check": check_metrics(model, world, TIOU[preset], device, **detect)}
    return export_model(model, study_name="gsmt", job=preset, seed=seed, profile=profile, name="gsmt",
                        preset=preset, factory=FACTORY, kwargs=kwargs, detect=detect,
                        world={"preset": preset, "profile": profile, "seed": seed},
                        recipe={**RECIPE, "epochs": EPOCHS[profile], **train_options(profile)}, metrics=metrics)
