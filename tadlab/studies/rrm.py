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

- ``06_recipe_validation.json`` (seed 0, validation; job ``anet_recipe``): notebook 06's recipe rule on these
  worlds (:func:`recipe_rows`): BMN at the learning rates :data:`RECIPE_BMN_LRS`, chosen by validation AR@100
  (:func:`choose_bmn_lr`); on the chosen BMN's learning rate, an RRM x3 trained jointly with BMN from scratch
  (:func:`train_joint`, measured at 0 and 3 iterations) and on the frozen chosen BMN at :data:`RECIPE_RRM_LRS`,
  chosen by the map error after 3 iterations (:func:`choose_recipe`).
- ``06_iterations.json`` (:data:`ABLATION_SEEDS`, testing): per seed the headline's BMN and classifier, RRMs on the
  frozen BMN trained for each count of :data:`TRAINED`, each unrolled at its own count and at
  :data:`TEST_ITERATIONS` (:func:`iteration_rows`), and the oracle maps (:data:`ORACLE_ROWS`); one job per trained
  count (:data:`ITERATION_JOBS`: ``anet_iterations`` the headline's x3 with BMN's and the oracle rows,
  ``anet_iterations_x1`` the x1, which trains the same BMN again), so that each job stays short. Left out for
  time: notebook 06's earlier sweep also unrolled at 1, 5 and 15.

- ``06_candidates.json`` (:data:`ABLATION_SEEDS`, testing; job ``anet_candidates``): notebook 06's candidate
  experiment (:func:`candidate_rows`) on the headline's BMN (the same seed trains the same BMN): its own or the
  oracle map, with BMN's boundary candidates or every valid cell a candidate (:data:`CANDIDATE_ROWS`), and the
  recall of the shortest instances, ``"AR@100 short"``; the notebook runs the same function live.

These rows measure proposals and maps with :func:`tadlab.bmn_measures.measure_bmn` (AR@AN, AUC, average mAP,
map error, recall by coverage, :data:`tadlab.bmn_measures.COVERAGE_EDGES`) and GFLOPs per video
(:func:`proposal_row`); the same seed trains the same BMN as the headline, so they pair with it.

The study's recipe (:data:`BMN_LR`, :data:`RRM_LR`, the RRM on the frozen BMN, :data:`ITERATIONS`) was chosen by
notebook 06 on the earlier worlds (T = D = 50); notebook 06 prints whether the rule applied to
``06_recipe_validation.json`` chooses the same. Seed 0's two headline detectors ship (``bmn`` and ``bmn_rrm``,
preset "anet"; :func:`detector` rebuilds them).
"""
from __future__ import annotations

import time

from tadlab.bmn_measures import COVERAGE_EDGES, grid_ceiling_recall, measure_bmn
from tadlab.diagnostics import DURATION_EDGES
from tadlab.eval import ANET_TIOU
from tadlab.experiments import ABLATION_SEEDS, HEADLINE_SEEDS, detection_metrics, standard_world
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
RECIPE_BMN_LRS, RECIPE_RRM_LRS = (1e-3, 3e-3, 1e-2), (3e-3, 1e-2)  # notebook 06's recipe grid (validation)
TRAINED, TEST_ITERATIONS = (1, ITERATIONS), (10,)  # RRMs trained (iterations); unrolled at these and at their own count
ORACLE_ROWS = {"oracle map": "map", "oracle map + boundaries": "map+boundaries"}  # row: bmn_predictions(oracle=)
CANDIDATE_ROWS = {"BMN": {}, "BMN, every cell a candidate": {"candidates": "all"},
                  "oracle map": {"oracle": "map"},
                  "oracle map, every cell a candidate": {"oracle": "map", "candidates": "all"}}
JOBS = {"headline": PRESET, "every_cell": f"{PRESET}_every_cell", "recipe": f"{PRESET}_recipe",
        "iterations": f"{PRESET}_iterations", "iterations_x1": f"{PRESET}_iterations_x1",
        "candidates": f"{PRESET}_candidates"}
ITERATION_JOBS = {JOBS["iterations"]: ITERATIONS, JOBS["iterations_x1"]: 1}  # job: the RRM it trains (iterations)

RESULTS = [
    Result("06_headline.json", jobs=(PRESET,), seeds=HEADLINE_SEEDS,
           meta={"preset": PRESET, "iterations": ITERATIONS, "bmn_lr": BMN_LR, "rrm_lr": RRM_LR,
                 "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
    Result("06_every_cell.json", jobs=(JOBS["every_cell"],), seeds=HEADLINE_SEEDS,
           meta={"preset": PRESET, "iterations": ITERATIONS, "bmn_lr": BMN_LR, "rrm_lr": RRM_LR,
                 "candidate_rules": CANDIDATE_RULES, "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
    Result("06_recipe_validation.json", jobs=(JOBS["recipe"],), seeds=(0,), subset="validation",
           meta={"preset": PRESET, "iterations": ITERATIONS, "bmn_lrs": list(RECIPE_BMN_LRS),
                 "rrm_lrs": list(RECIPE_RRM_LRS), "study_recipe": {"bmn_lr": BMN_LR, "rrm_lr": RRM_LR,
                                                                   "joint": False}}),
    Result("06_candidates.json", jobs=(JOBS["candidates"],), seeds=ABLATION_SEEDS,
           meta={"preset": PRESET, "bmn_lr": BMN_LR, "candidate_rows": CANDIDATE_ROWS,
                 "coverage_edges": list(COVERAGE_EDGES)}),
    Result("06_iterations.json", jobs=tuple(ITERATION_JOBS), seeds=ABLATION_SEEDS,
           meta={"preset": PRESET, "bmn_lr": BMN_LR, "rrm_lr": RRM_LR, "trained": list(TRAINED),
                 "test_iterations": list(TEST_ITERATIONS), "coverage_edges": list(COVERAGE_EDGES)}),
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


def train_rrm(model, world, seed: int, profile: str, device="cpu", iterations: int = ITERATIONS,
              lr: float = RRM_LR):
    """An RRM of ``iterations`` training (and test-time) iterations trained at ``lr`` on ``model``'s frozen BMN (a
    trained :class:`~tadlab.models.ProposalDetector`): a new detector with the same BMN and classifier weights."""
    seed_everything(seed)
    refined = detector(**kwargs_of(world, iterations))
    missing, unexpected = refined.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not missing or not all(key.startswith("proposer.refine.") for key in missing):
        raise RuntimeError(f"the refined detector should differ from BMN by the RRM only: missing {missing}, "
                           f"unexpected {unexpected}")
    refined.requires_grad_(False)
    refined.proposer.refine.requires_grad_(True)
    fit(refined.proposer, world.dataset("training"), epochs=RRM_EPOCHS[profile], lr=lr, seed=seed, device=device,
        progress=False, **benchmark.BMN_TRAIN)
    return refined.eval()


def train_joint(world, seed: int, lr: float, profile: str, device="cpu", iterations: int = ITERATIONS):
    """BMN and an RRM of ``iterations`` iterations trained together from scratch (one ``fit`` of BMN's recipe at
    ``lr``, BMN's epochs), with the video classifier of :func:`tadlab.studies.benchmark.train`."""
    seed_everything(seed)
    model = detector(**kwargs_of(world, iterations))
    benchmark.train_video_classifier(model.classifier, world, seed, profile, device)
    fit(model.proposer, world.dataset("training"), epochs=benchmark.epochs("bmn", PRESET, profile), lr=lr, seed=seed,
        device=device, progress=False, **benchmark.BMN_TRAIN)
    return model.eval()


def proposal_row(model, world, subset: str = "testing", iterations: int | None = None, **prediction_kwargs) -> dict:
    """One row of the recipe, iteration and candidate tables: :func:`~tadlab.bmn_measures.measure_bmn` of a trained
    :class:`~tadlab.models.ProposalDetector` (``iterations``: the RRM's test-time count, None for plain BMN) with the
    recall by coverage, and the forward GFLOPs per video."""
    proposer = model.proposer
    row = measure_bmn(proposer, model.classifier, world, subset, coverage_edges=COVERAGE_EDGES, iterations=iterations,
                      **prediction_kwargs)
    row["AR@100 short"] = row["recall_by_coverage"][0]  # instances up to COVERAGE_EDGES[0] of their video
    cost = proposer.cost() if iterations is None else proposer.cost(iterations)
    row["gflops"] = cost["flops"] / 1e9
    return row


def _value(row, key: str) -> float:
    return row.mean(key) if hasattr(row, "mean") else row[key]  # a stored SeedRuns or one job's metrics


def choose_bmn_lr(rows) -> float:
    """Notebook 06's rule for BMN: the learning rate of the best validation AR@100 among the rows "BMN, lr X" (a
    tie to the larger rate). ``rows``: {name: metrics} or the stored file (:func:`tadlab.experiments.load_runs`)."""
    return max((_value(row, "AR@100"), float(name.split("lr ")[1])) for name, row in rows.items()
               if name.startswith("BMN, lr "))[1]


def choose_recipe(rows) -> tuple[float, bool, float]:
    """Notebook 06's recipe rule on the rows of ``06_recipe_validation.json``: BMN's lr (:func:`choose_bmn_lr`), then
    the RRM row with the lowest map error after 3 iterations: ``(bmn_lr, joint, rrm_lr)``."""
    best = min((_value(row, "map_error"), name) for name, row in rows.items() if name.endswith("test x3"))[1]
    return choose_bmn_lr(rows), "joint" in best, float(best.split("lr ")[1].split(",")[0])


def recipe_rows(world, seed: int, profile: str, device="cpu") -> dict:
    """The rows of ``06_recipe_validation.json`` on ``world``'s validation videos: BMN at each of
    :data:`RECIPE_BMN_LRS`; on the rate :func:`choose_bmn_lr` picks, an RRM x:data:`ITERATIONS` trained jointly
    (tested at 0 and 3) and on the frozen BMN at each of :data:`RECIPE_RRM_LRS` (tested at 3)."""
    bmns, rows = {}, {}
    for lr in RECIPE_BMN_LRS:
        bmns[lr], _, _ = benchmark.train("bmn", world, seed, lr, profile, device)
        rows[f"BMN, lr {lr:g}"] = proposal_row(bmns[lr].eval(), world, "validation")
    bmn_lr = choose_bmn_lr(rows)
    joint = train_joint(world, seed, bmn_lr, profile, device)
    for k in (0, ITERATIONS):
        rows[f"RRM x{ITERATIONS} joint with BMN, lr {bmn_lr:g}, test x{k}"] = proposal_row(joint, world, "validation", k)
    for lr in RECIPE_RRM_LRS:
        refined = train_rrm(bmns[bmn_lr], world, seed, profile, device, lr=lr)
        rows[f"RRM x{ITERATIONS} on frozen BMN, lr {lr:g}, test x{ITERATIONS}"] = proposal_row(
            refined, world, "validation", ITERATIONS)
    return rows


def iteration_rows(world, bmn, refined: dict, test_iterations=TEST_ITERATIONS, baseline: bool = True) -> dict:
    """The rows of ``06_iterations.json`` for one world (testing): each RRM of ``refined`` ({training iterations:
    detector on the BMN ``bmn``, a trained detector}) unrolled at ``test_iterations`` and at its own count
    (``"RRM xN, test xK"``); with ``baseline`` also ``"BMN"`` (first) and the oracle maps on it (:data:`ORACLE_ROWS`)."""
    rows = {"BMN": proposal_row(bmn, world)} if baseline else {}
    for n, model in sorted(refined.items()):
        for k in sorted(set(test_iterations) | {n}):
            rows[f"RRM x{n}, test x{k}"] = proposal_row(model, world, iterations=k)
    if baseline:
        for name, oracle in ORACLE_ROWS.items():
            rows[name] = proposal_row(bmn, world, oracle=oracle)
    return rows


def candidate_rows(world, bmn) -> dict:
    """Notebook 06's candidate experiment on one world (testing): BMN (a trained detector) with its own or the
    oracle map, with BMN's candidates or every valid cell a candidate (:data:`CANDIDATE_ROWS`)."""
    return {name: proposal_row(bmn, world, **options) for name, options in CANDIDATE_ROWS.items()}


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
    if job not in JOBS.values():
        raise ValueError(f"unknown job {job!r} of study 'rrm'; its jobs are {list(JOBS.values())}")
    world = standard_world(PRESET, profile, seed)
    if job == JOBS["recipe"]:
        return {**recipe_rows(world, seed, profile, device), "meta": {"rrm_epochs": RRM_EPOCHS[profile]}}
    started = time.perf_counter()
    bmn, detect, _ = benchmark.train("bmn", world, seed, BMN_LR, profile, device)
    seconds = {"bmn and classifier": time.perf_counter() - started}
    if job == JOBS["candidates"]:
        return {**candidate_rows(world, bmn.eval()), "meta": {"train_seconds": seconds}}
    n = ITERATION_JOBS.get(job, ITERATIONS)
    started = time.perf_counter()
    refined = train_rrm(bmn, world, seed, profile, device, iterations=n)
    seconds[f"rrm x{n}"] = time.perf_counter() - started
    if job in ITERATION_JOBS:
        return {**iteration_rows(world, bmn.eval(), {n: refined}, baseline=n == ITERATIONS),
                "meta": {"train_seconds": seconds, "rrm_epochs": RRM_EPOCHS[profile]}}
    seconds["rrm"] = seconds.pop(f"rrm x{n}")
    if job == JOBS["every_cell"]:
        return {**every_cell(world, bmn.eval(), refined), "meta": {"train_seconds": seconds}}
    rows = {ROWS[0]: measure(bmn.eval(), world, profile, device), ROWS[1]: measure(refined, world, profile, device)}
    meta = {"bmn_lr": BMN_LR, "rrm_lr": RRM_LR, "iterations": ITERATIONS,
            "bmn_epochs": benchmark.epochs("bmn", PRESET, profile), "rrm_epochs": RRM_EPOCHS[profile],
            "train_seconds": seconds}
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

