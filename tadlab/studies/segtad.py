"""Notebook 07's experiments: SegTAD (1D-SSN + PDN, Zhao et al.) on the ActivityNet-like world.

- ``07_headline.json``: SegTAD trained on ``standard_world("anet", profile, seed)`` over :data:`HEADLINE_SEEDS` (the
  worlds and seeds of notebook 01's ``01_baselines.json``, so its rows pair with the baselines'), the same trained
  model read three ways (:data:`READINGS`): the paper's decoding with the video's top-2 classes ("SegTAD"), classes
  from the proposal's own span, and the 1D-SSN alone (its class map decoded by class-map grouping, the third
  baseline's decoder). Seed 0's model ships (``tadlab.pretrained``, name "segtad").
- ``07_ablations.json``: one change from the headline recipe per job over :data:`ABLATION_SEEDS`, read the same three
  ways: the PDN without its proposal graph (the paper's Table 7), then each PAG branch switched off in turn (the
  shape of its Table 5).
- ``07_init_replicates.json``: how much of a row's spread is the training alone. One world (seed
  :data:`REPLICATE_WORLD` of the headline's) and :data:`REPLICATE_SEEDS` training seeds (the initialisation and the
  order of the batches; the world stays the same): the headline recipe and the PDN without its graph, read the same
  three ways. Training seed 0 on world 0 runs the headline's (and the ablation's) seed 0 again: the same numbers
  where the floating point is the same (CPU kernels, library versions).
- ``07_class_sources.json``: where SegTAD's classes come from, on both presets over :data:`HEADLINE_SEEDS` (the
  worlds of ``01_baselines.json``). The paper takes them from an external video classifier's top-2 (Sec. 3.4,
  UntrimmedNets on ActivityNet); the headline lets the 1D-SSN stand in for it. Per seed one SegTAD (the headline's
  training run again, so the "SegTAD" row repeats the headline's and, on thumos, ``08_second_preset.json``'s, where
  the floating point is the same) read with
  :data:`CLASS_SOURCES`: the 1D-SSN's video classes, a :class:`~tadlab.models.VideoClassifier` trained as BMN's
  (:func:`tadlab.studies.benchmark.train_video_classifier`), and the video's true classes (an oracle: what the
  proposals reach when the class is right).

The recipe (:data:`MODEL`, :data:`PATTERN`, :data:`TRAIN`, :data:`EPOCHS`, :data:`DETECT`) is the one notebook 07
chose on the validation videos of the earlier full world of seed 0 (its section 6, ``07_recipe_validation.json``,
a hand-run sweep, not a workflow job): centred features, 25 epochs, eta = 4, classes from the video, top 2.
:func:`train_segtad` trains it; the notebook calls the same function.
"""
from __future__ import annotations

import torch

from tadlab.diagnostics import DURATION_EDGES
from tadlab.eval import ANET_TIOU, THUMOS_TIOU
from tadlab.experiments import ABLATION_SEEDS, HEADLINE_SEEDS, detection_metrics, standard_world
from tadlab.studies import Result, export_model

NOTEBOOK = "07"
PRESET = "anet"  # the paper's benchmark is ActivityNet; the THUMOS-like world is left out (time)
TIOU = {"thumos": THUMOS_TIOU, "anet": ANET_TIOU}
# The recipe chosen on validation in notebook 07, section 6 (07_recipe_validation.json): width C' = 64 for a CPU
# (the paper gives none), the paper's K = 4 neighbours in both graphs, per-video centred features (not in the paper)
MODEL = dict(hidden=64, graph_k=4, pdn_k=4, center_features=True)
PATTERN = {"anet": dict(eta=4), "thumos": dict(eta=2, max_duration=32)}  # the sparse pattern (Eq. 8) per world
TRAIN = dict(batch_size=16, lr=3e-3, weight_decay=1e-4, clip_grad_norm=1.0, optimizer="adamw", schedule="cosine")
EPOCHS = {"smoke": 1, "ci": 15, "full": 25}
DETECT = dict(classes="video", top_classes=2)  # the headline's decoding (chosen on validation)
READINGS = {"SegTAD": DETECT, "SegTAD, classes from the proposal": dict(classes="proposal"),
            "1D-SSN alone (class-map grouping)": dict(decoding="segmentation")}
BOOTSTRAP = 100  # resamplings of the testing videos for the evaluation's sampling error (at "full")
ABLATIONS = {"pdn_no_graph": ("PDN without graph (1x1 conv)", dict(pdn_graph=False)),  # job: (row prefix, change)
             "pag_no_gc": ("PAG without GC (graph)", dict(graph=False)),
             "pag_no_ac": ("PAG without AC (atrous)", dict(atrous=False)),
             "pag_no_gp": ("PAG without GP (global pool)", dict(global_pool=False))}
SHIPPED_SEEDS = (0,)
CLASS_SOURCES = ("SegTAD", "SegTAD, classes from a video classifier", "SegTAD, true video classes (oracle)")
CLASS_SOURCE_JOBS = {"anet_classes": "anet", "thumos_classes": "thumos"}  # job: preset
REPLICATE_WORLD = 0  # the world every replicate trains on; the replicates' seeds are training seeds only
REPLICATE_SEEDS = (0, 1, 2)
REPLICATES = {"init": ("", {}),  # job: (row prefix, change), rows named as the headline's and the ablation's
              "pdn_no_graph_init": ("PDN without graph (1x1 conv): ", dict(pdn_graph=False))}

RESULTS = [
    Result("07_headline.json", jobs=(PRESET,), seeds=HEADLINE_SEEDS,
           meta={"preset": PRESET, "decoding": DETECT, "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
    Result("07_ablations.json", jobs=tuple(ABLATIONS), seeds=ABLATION_SEEDS,
           meta={"preset": PRESET, "decoding": DETECT, "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
    Result("07_class_sources.json", jobs=tuple(CLASS_SOURCE_JOBS), seeds=HEADLINE_SEEDS,
           meta={"decoding": DETECT, "class_sources": CLASS_SOURCES,
                 "tiou": {preset: [round(float(t), 2) for t in TIOU[preset]] for preset in ("thumos", "anet")}}),
    Result("07_init_replicates.json", jobs=tuple(REPLICATES), seeds=REPLICATE_SEEDS,
           meta={"preset": PRESET, "decoding": DETECT, "world_seed": REPLICATE_WORLD,
                 "seeds_are": "training seeds (initialisation and batch order) on one world",
                 "tiou": [round(float(t), 2) for t in ANET_TIOU]}),
]


def recipe(preset: str, profile: str, **overrides) -> dict:
    """The model config and training recipe of notebook 07 at ``profile`` (``overrides`` change the config)."""
    return {"config": {**MODEL, **PATTERN[preset], **overrides}, "epochs": EPOCHS[profile], **TRAIN}


def train_segtad(world, preset: str, profile: str, seed: int, device="cpu", epochs: int | None = None,
                 progress: bool = False, **overrides):
    """SegTAD with notebook 07's recipe (``overrides`` change its config, ``epochs`` its length) trained on
    ``world``'s training videos from ``seed``: ``(model, history)``; the model is left in eval mode."""
    import tadlab
    from tadlab.models import SegTAD

    chosen = recipe(preset, profile, **overrides)
    config = chosen.pop("config")
    chosen["epochs"] = chosen["epochs"] if epochs is None else epochs
    tadlab.seed_everything(seed)
    model = SegTAD(world.feature_dim, world.num_classes, world.num_snippets, **config)
    history = tadlab.train.fit(model, world.dataset("training"), seed=seed, device=device, progress=progress,
                               **chosen)
    return model, history


def readings(model, world, preset: str, profile: str, device="cpu", prefix: str = "") -> dict:
    """The trained model's testing metrics read the three ways of :data:`READINGS` (row names after ``prefix``)."""
    extra = {"bootstrap": BOOTSTRAP, "duration_edges": DURATION_EDGES[preset]} if profile == "full" else {}
    return {f"{prefix}{name}": detection_metrics(model, world, TIOU[preset], device=device, **extra, **options)
            for name, options in READINGS.items()}


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job == PRESET:
        world = standard_world(PRESET, profile, seed)
        model, history = train_segtad(world, PRESET, profile, seed, device=device)
        rows = readings(model, world, PRESET, profile, device)
        meta = {"recipe": recipe(PRESET, profile), "final_loss": history.train["total"][-1]}
        if seed in SHIPPED_SEEDS:
            meta["pretrained"] = [ship(model, world, seed, profile, rows, device)]
        return {**rows, "meta": meta}
    if job in ABLATIONS:
        name, change = ABLATIONS[job]
        world = standard_world(PRESET, profile, seed)
        model, history = train_segtad(world, PRESET, profile, seed, device=device, **change)
        rows = readings(model, world, PRESET, profile, device, prefix=f"{name}: ")
        return {**rows, "meta": {"recipe": recipe(PRESET, profile, **change), "final_loss": history.train["total"][-1]}}
    if job in CLASS_SOURCE_JOBS:
        preset = CLASS_SOURCE_JOBS[job]
        world = standard_world(preset, profile, seed)
        model, history = train_segtad(world, preset, profile, seed, device=device)
        return {**class_sources(model, world, preset, profile, seed, device),
                "meta": {"recipe": recipe(preset, profile), "final_loss": history.train["total"][-1]}}
    if job in REPLICATES:
        prefix, change = REPLICATES[job]
        world = standard_world(PRESET, profile, REPLICATE_WORLD)
        model, history = train_segtad(world, PRESET, profile, seed, device=device, **change)
        rows = readings(model, world, PRESET, profile, device, prefix=prefix)
        return {**rows, "meta": {"recipe": recipe(PRESET, profile, **change), "world_seed": REPLICATE_WORLD,
                                 "final_loss": history.train["total"][-1]}}
    raise ValueError(f"unknown job {job!r} of study 'segtad'; its jobs are "
                     f"{[PRESET, *ABLATIONS, *CLASS_SOURCE_JOBS, *REPLICATES]}")


def class_sources(model, world, preset: str, profile: str, seed: int, device="cpu") -> dict:
    """One trained SegTAD read with each of :data:`CLASS_SOURCES` on testing (rows "PRESET: SOURCE"): its own
    1D-SSN's video classes (the headline's decoding), a video classifier trained here (seed ``seed``), the true
    classes of each video. Top-2 classes (:data:`DETECT`) throughout."""
    from tadlab.models import ProposalDetector, VideoClassifier
    from tadlab.studies.benchmark import train_video_classifier
    from tadlab.utils import seed_everything

    extra = {"bootstrap": BOOTSTRAP, "duration_edges": DURATION_EDGES[preset]} if profile == "full" else {}
    own, classified, oracle = CLASS_SOURCES
    rows = {own: detection_metrics(model, world, TIOU[preset], device=device, **extra, **DETECT)}
    seed_everything(seed)
    classifier = VideoClassifier(world.feature_dim, world.num_classes)
    train_video_classifier(classifier, world, seed, profile, device)
    detector = ProposalDetector(model, classifier).eval()
    rows[classified] = detection_metrics(detector, world, TIOU[preset], device=device, **extra,
                                         top_classes=DETECT["top_classes"])
    rows[oracle] = true_class_metrics(model, world, preset, device)
    return {f"{preset}: {name}": metrics for name, metrics in rows.items()}


@torch.no_grad()
def true_class_detections(model, world, device="cpu", batch_size: int = 32) -> list[dict]:
    """SegTAD's detections on the testing videos, in order, with each video's true classes as its class scores (1 /
    the number of its classes each; top-2 as :data:`DETECT`, a second class of score 0 dropped)."""
    from tadlab.data.collate import collate_videos

    items = list(world.dataset("testing"))
    model.eval().to(device)
    detections = []
    for first in range(0, len(items), batch_size):
        chunk = items[first:first + batch_size]
        scores = torch.zeros(len(chunk), world.num_classes)
        for row, item in enumerate(chunk):
            present = item["labels"].unique()
            scores[row, present] = 1.0 / len(present)
        outputs = model(collate_videos(chunk)["features"].to(device))
        for found in model.detect(outputs, class_scores=scores.to(device), top_classes=DETECT["top_classes"]):
            keep = found["scores"] > 0
            detections.append({key: value[keep].cpu() for key, value in found.items()})
    return detections


def true_class_metrics(model, world, preset: str, device="cpu") -> dict:
    """:func:`true_class_detections` scored on testing: ``average_mAP``, ``mAP`` per tIoU of ``preset``."""
    from tadlab.data.schema import detections_to_results
    from tadlab.eval import evaluate_detection

    items = list(world.dataset("testing"))
    results = detections_to_results(true_class_detections(model, world, device), [item["video_id"] for item in items],
                                    [float(item["duration"]) for item in items], world.num_snippets,
                                    world.class_names)
    metrics = evaluate_detection(world.ground_truth, results, TIOU[preset], subset="testing")
    return {"average_mAP": float(metrics.average_mAP), "mAP": [float(m) for m in metrics.mAP],
            "tiou_thresholds": [float(t) for t in metrics.tiou_thresholds], "subset": "testing"}


def ship(model, world, seed: int, profile: str, rows: dict, device) -> dict:
    """Export a trained SegTAD (decoded as the headline row "SegTAD") for shipping."""
    from tadlab.pretrained import check_metrics

    chosen = recipe(PRESET, profile)
    kwargs = {"feature_dim": world.feature_dim, "num_classes": world.num_classes,
              "num_snippets": world.num_snippets, **chosen.pop("config")}
    metrics = {"average_mAP": rows["SegTAD"]["average_mAP"],
               "ssn_alone_average_mAP": rows["1D-SSN alone (class-map grouping)"]["average_mAP"],
               "check": check_metrics(model, world, TIOU[PRESET], device, **DETECT)}
    return export_model(model, study_name="segtad", job=PRESET, seed=seed, profile=profile, name="segtad",
                        preset=PRESET, factory="tadlab.models.segtad:SegTAD", kwargs=kwargs, detect=dict(DETECT),
                        world={"preset": PRESET, "profile": profile, "seed": seed}, recipe=chosen, metrics=metrics)
