"""Notebook 06's headline: BMN, and BMN refined by RCL's recurrent refinement module (RRM), on the standard worlds.

- ``06_headline.json``: per seed of ``standard_world("anet", profile, seed)`` (T = D = 100, the worlds and seeds of
  notebook 01's ``01_baselines.json``, so the rows pair with its "anet: ..." rows), two rows on testing:

  * ``"BMN"``: BMN at the library's CPU widths (``bmn.CPU_CONFIG``) with a video-level classifier, BMN's Soft-NMS
    (the recipe of :func:`tadlab.studies.benchmark.train`: BMN 15 epochs, AdamW, batch 8, weight decay 1e-4,
    cosine; the classifier 20 epochs at lr 1e-2, batch 16);
  * ``"BMN + RRM x3"``: the same trained BMN and classifier, plus an RRM (``rrm.CPU_CONFIG``) trained for
    :data:`ITERATIONS` iterations on the frozen BMN (15 epochs, RAFT's sequence loss) and unrolled as many at test
    time.

  Each row holds the detections' ``average_mAP``, ``mAP`` per tIoU (0.5:0.95), the evaluation's sampling error
  (``bootstrap_error``, at "full") and the breakdown by instance length (``duration``), as notebook 01's rows; and
  the proposals' ``AR@1``, ``AR@10``, ``AR@100``, ``AUC`` (ActivityNet's proposal evaluation), ``map_error`` (the
  regression channel's mean squared error against the target tIoU) and ``gflops`` per video.

- ``06_every_cell.json``: where the map, not the boundary candidates, decides what is proposed. Per seed the
  headline's training run again (the same code, recipe and seed: its "... , BMN's candidates" rows repeat the
  headline's numbers where the floating point is the same, and notebook 06 prints how far they moved in another
  session), measured by :func:`tadlab.bmn_measures.measure_bmn` with BMN's candidates
  and with every valid cell a candidate (:data:`CANDIDATE_RULES`), and the T = D = 100 grid's ceiling on the
  same testing videos (:func:`tadlab.bmn_measures.grid_ceiling_recall`: the recall, at each tIoU, of the best cell
  of every instance; no map can propose better cells).

The recipe is notebook 06's, chosen on validation on the earlier worlds (``results/06_recipe_validation.json``: T =
50, seed 0): BMN at lr 3e-3, then the RRM on the frozen BMN (not jointly) at lr 3e-3; three training iterations, the
count whose stored rows (``06_iterations.json``) hold up best when unrolled (the RRM x1 loses mAP past its count).
Seed 0's two detectors ship (``bmn`` and ``bmn_rrm``, preset "anet"; :func:`detector` rebuilds them).
"""
from __future__ import annotations

import time

import torch

from tadlab.bmn_measures import grid_ceiling_recall, measure_bmn
from tadlab.diagnostics import DURATION_EDGES
from tadlab.eval import ANET_TIOU
from tadlab.experiments import HEADLINE_SEEDS, detection_metrics, standard_world
from tadlab.pretrained import check_metrics
from tadlab.studies import Result, export_model
from tadlab.studies import benchmark
from tadlab.train import fit
from tadlab.utils import seed_everything

NOTEBOOK = "06"
PRESET = "anet"
ITERATIONS = 3  # the RRM's training (and test-time) iterations
BMN_LR, RRM_LR = benchmark.BMN_LR, 3e-3  # notebook 06's recipe (results/06_recipe_validation.json)
RRM_EPOCHS = {"smoke": 1, "ci": 5, "full": 15}  # as BMN's (benchmark.epochs)
BOOTSTRAP = 100
SHIPPED_SEEDS = (0,)
ROWS = ("BMN", f"BMN + RRM x{ITERATIONS}")
CANDIDATE_RULES = {"BMN's candidates": "peaks", "every cell a candidate": "all"}  # row suffix: BMN.detect(candidates=)
GRID_CEILING = "grid ceiling (best cell per instance)"

RESULTS = [
    Result("06_headline.json", jobs=(PRESET,), seeds=HEADLINE_SEEDS,
           meta={"preset": PRESET, "iterations": ITERATIONS, "bmn_lr": BMN_LR, "rrm_lr": RRM_LR,
                 "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
    Result("06_every_cell.json", jobs=(f"{PRESET}_every_cell",), seeds=HEADLINE_SEEDS,
           meta={"preset": PRESET, "iterations": ITERATIONS, "bmn_lr": BMN_LR, "rrm_lr": RRM_LR,
                 "candidate_rules": CANDIDATE_RULES, "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
]


def detector(feature_dim: int, num_classes: int, num_snippets: int, max_duration: int, iterations: int = 0):
    """BMN (``bmn.CPU_CONFIG``, features centred) with a :class:`~tadlab.models.VideoClassifier`, as one
    :class:`~tadlab.models.ProposalDetector`; with ``iterations`` > 0 the BMN carries an RRM (``rrm.CPU_CONFIG``)
    of that many training and test-time iterations. The shipped models' factory (JSON ``kwargs``)."""
    from tadlab.models import BMN, RRM, ProposalDetector, VideoClassifier
    from tadlab.models import bmn as bmn_module
    from tadlab.models import rrm as rrm_module

    refine = None
    if iterations:
        refine = RRM(bmn_module.CPU_CONFIG["hidden_2d"], iterations=iterations, **rrm_module.CPU_CONFIG)
    bmn = BMN(feature_dim, num_snippets, max_duration, **bmn_module.CPU_CONFIG, center_features=True, refine=refine)
    return ProposalDetector(bmn, VideoClassifier(feature_dim, num_classes))


def kwargs_of(world, iterations: int = 0) -> dict:
    return {"feature_dim": world.feature_dim, "num_classes": world.num_classes, "num_snippets": world.num_snippets,
            "max_duration": benchmark.BMN_MAX_DURATION[PRESET], "iterations": iterations}


def train_rrm(model, world, seed: int, profile: str, device="cpu"):
    """An RRM of :data:`ITERATIONS` iterations trained on ``model``'s frozen BMN (a trained
    :class:`~tadlab.models.ProposalDetector`): a new detector with the same BMN and classifier weights."""
    seed_everything(seed)
    refined = detector(**kwargs_of(world, ITERATIONS))
    missing, unexpected = refined.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not missing or not all(key.startswith("proposer.refine.") for key in missing):
        raise RuntimeError(f"the refined detector should differ from BMN by the RRM only: missing {missing}, "
                           f"unexpected {unexpected}")
    refined.requires_grad_(False)
    refined.proposer.refine.requires_grad_(True)
    fit(refined.proposer, world.dataset("training"), epochs=RRM_EPOCHS[profile], lr=RRM_LR, seed=seed, device=device,
        progress=False, **benchmark.BMN_TRAIN)
    return refined.eval()


def measure(model, world, profile: str, device="cpu") -> dict:
    """One row: the detections' metrics (:func:`tadlab.experiments.detection_metrics`, as notebook 01's rows) and the
    proposals' (:func:`tadlab.bmn_measures.measure_bmn`), with the forward GFLOPs per video."""
    detect = {"top_classes": benchmark.BMN_TOP_CLASSES[PRESET]}
    row = detection_metrics(model, world, ANET_TIOU, "testing", device, **detect,
                            bootstrap=BOOTSTRAP if profile == "full" else 0, duration_edges=DURATION_EDGES[PRESET])
    proposals = measure_bmn(model.proposer, model.classifier, world, "testing")
    row.update({key: proposals[key] for key in ("AR@1", "AR@10", "AR@100", "AUC", "map_error")})
    row["proposal_average_mAP"] = proposals["average_mAP"]  # the same detections scored by measure_bmn (a check)
    row["gflops"] = model.proposer.cost()["flops"] / 1e9
    return row


def every_cell(world, bmn, refined) -> dict:
    """The rows of ``06_every_cell.json`` for one world: each detector with each candidate rule (proposal metrics
    and the detections' ``average_mAP``, :func:`~tadlab.bmn_measures.measure_bmn`) and the grid ceiling."""
    rows = {}
    for name, model in zip(ROWS, (bmn, refined)):
        for rule, candidates in CANDIDATE_RULES.items():
            measured = measure_bmn(model.proposer, model.classifier, world, "testing", candidates=candidates)
            rows[f"{name}, {rule}"] = {key: measured[key] for key in ("AR@1", "AR@10", "AR@100", "AUC",
                                                                      "average_mAP", "mAP", "map_error")}
    ceiling = grid_ceiling_recall(world.dataset("testing"), world.num_snippets, benchmark.BMN_MAX_DURATION[PRESET])
    rows[GRID_CEILING] = {key: ceiling[key] for key in ("AR@100", "recall", "tiou_thresholds", "num_instances")}
    return rows


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job not in (PRESET, f"{PRESET}_every_cell"):
        raise ValueError(f"unknown job {job!r} of study 'rrm'; its jobs are {[PRESET, f'{PRESET}_every_cell']}")
    world = standard_world(PRESET, profile, seed)
    started = time.perf_counter()
    bmn, detect, _ = benchmark.train("bmn", world, seed, BMN_LR, profile, device)
    bmn_seconds = time.perf_counter() - started
    started = time.perf_counter()
    refined = train_rrm(bmn, world, seed, profile, device)
    rrm_seconds = time.perf_counter() - started
    if job != PRESET:
        return {**every_cell(world, bmn.eval(), refined),
                "meta": {"train_seconds": {"bmn and classifier": bmn_seconds, "rrm": rrm_seconds}}}
    rows = {ROWS[0]: measure(bmn.eval(), world, profile, device), ROWS[1]: measure(refined, world, profile, device)}
    meta = {"bmn_lr": BMN_LR, "rrm_lr": RRM_LR, "iterations": ITERATIONS,
            "bmn_epochs": benchmark.epochs("bmn", PRESET, profile), "rrm_epochs": RRM_EPOCHS[profile],
            "train_seconds": {"bmn and classifier": bmn_seconds, "rrm": rrm_seconds}}
    if seed in SHIPPED_SEEDS:
        meta["pretrained"] = [ship(model, name, iterations, world, seed, profile, rows[row], detect, device)
                              for model, name, iterations, row in ((bmn, "bmn", 0, ROWS[0]),
                                                                   (refined, "bmn_rrm", ITERATIONS, ROWS[1]))]
    return {**rows, "meta": meta}


def ship(model, name: str, iterations: int, world, seed: int, profile: str, row: dict, detect: dict, device) -> dict:
    """Export a trained detector (``bmn`` or ``bmn_rrm``) of seed ``seed`` for shipping."""
    recipe = {"bmn": {"lr": BMN_LR, "epochs": benchmark.epochs("bmn", PRESET, profile), **benchmark.BMN_TRAIN,
                      "optimizer": "adamw", "schedule": "cosine"},
              "classifier": {"lr": 1e-2, "epochs": 20 if profile == "full" else benchmark.SHORT[profile],
                             "batch_size": 16, "weight_decay": 1e-4}}
    if iterations:
        recipe["rrm"] = {"lr": RRM_LR, "epochs": RRM_EPOCHS[profile], **benchmark.BMN_TRAIN, "frozen_bmn": True}
    metrics = {key: row[key] for key in ("average_mAP", "AR@100", "AUC")}
    metrics["check"] = check_metrics(model, world, ANET_TIOU, device, **detect)
    return export_model(model, study_name="rrm", job=PRESET, seed=seed, profile=profile, name=name, preset=PRESET,
                        factory="tadlab.studies.rrm:detector", kwargs=kwargs_of(world, iterations), detect=detect,
                        world={"preset": PRESET, "profile": profile, "seed": seed}, recipe=recipe, metrics=metrics)

