"""Notebook 08's experiments: every family side by side on both presets, and what each costs.

The families' own notebooks store their headline rows on the preset they teach (GSMT on both, SP-TAD on thumos,
BMN + RRM and SegTAD on anet; notebook 01's baselines on both): this study adds what the side-by-side table lacks,
on the same worlds, seeds (:data:`HEADLINE_SEEDS`) and testing videos:

- ``08_recipe_validation.json``: each added (family, preset)'s learning rate, chosen on validation (seed 0);
- ``08_benchmark.json``: the one-stage reference (:class:`~tadlab.models.ActionFormer`) on both presets, BMN (with
  its video-level classifier, BMN's Soft-NMS) on the standard worlds of both presets (notebook 06 runs it at T = 50
  on anet, a CPU deviation of its own);
- ``08_cost.json``: per family and preset, parameters, forward GFLOPs per video, training CPU-seconds per epoch,
  inference CPU-milliseconds per video (forward and decoding, one thread) and the training's peak memory, each
  measured in its own process (:func:`cost`).
"""
from __future__ import annotations

import resource
import time

import torch

from tadlab.diagnostics import DURATION_EDGES
from tadlab.eval import ANET_TIOU, THUMOS_TIOU
from tadlab.experiments import HEADLINE_SEEDS, detection_metrics, standard_world
from tadlab.studies import Result, results_dir
from tadlab.train import fit, predict
from tadlab.utils import seed_everything

NOTEBOOK = "08"
PRESETS = ("thumos", "anet")
TIOU = {"thumos": THUMOS_TIOU, "anet": ANET_TIOU}
BOOTSTRAP = 100
# ActionFormer: AdamW (weight decay 0.05), batch 4, clipping at 1, linear warm-up then cosine, as its release; the
# epochs were chosen on the ci worlds' validation videos (tests/test_actionformer.py's helper sweep: thumos 60,
# anet 30), the learning rate here on the full worlds' validation videos.
ACTIONFORMER_EPOCHS = {"thumos": 60, "anet": 30}
ACTIONFORMER_TRAIN = dict(batch_size=4, weight_decay=0.05, clip_grad_norm=1.0, schedule="cosine")
# BMN: notebook 06's recipe (AdamW, batch 8, weight decay 1e-4, cosine, 15 epochs; the video classifier 20 epochs
# at lr 1e-2, batch 16); the longest proposal D: the whole video on anet, 64 snippets (about 50 s) on thumos
BMN_EPOCHS, BMN_TRAIN = 15, dict(batch_size=8, weight_decay=1e-4)
BMN_MAX_DURATION = {"thumos": 64, "anet": 100}
BMN_TOP_CLASSES = {"thumos": 2, "anet": 1}  # thumos videos may hold two classes (14-19 % of THUMOS14's)
LRS = {"actionformer": (1e-3, 3e-3), "bmn": (1e-3, 3e-3)}
SHORT = {"smoke": 1, "ci": 5}  # epochs at the small profiles (the DAG runs; nothing is learnt)
COST_FAMILIES = ("naive", "context", "actionformer", "bmn")


def recipe_job(family: str, preset: str, lr: float) -> str:
    return f"{family}_{preset}_lr{lr:g}"


RESULTS = [
    Result("08_recipe_validation.json", seeds=(0,), subset="validation",
           jobs=tuple(recipe_job(f, p, lr) for f in ("actionformer", "bmn") for p in PRESETS for lr in LRS[f])),
    Result("08_benchmark.json", jobs=tuple(f"{f}_{p}" for f in ("actionformer", "bmn") for p in PRESETS),
           seeds=HEADLINE_SEEDS, needs=("08_recipe_validation.json",)),
    Result("08_cost.json", jobs=tuple(f"cost_{f}_{p}" for f in COST_FAMILIES for p in PRESETS), seeds=(0,)),
]


def epochs(family: str, preset: str, profile: str) -> int:
    full = ACTIONFORMER_EPOCHS[preset] if family == "actionformer" else BMN_EPOCHS
    return full if profile == "full" else SHORT[profile]


def build(family: str, world) -> torch.nn.Module:
    """An untrained model of ``family`` at the configuration its rows use, for ``world``."""
    from tadlab.models import ActionFormer, BMN, ProposalDetector, SnippetClassifier, TemporalContextClassifier
    from tadlab.models import VideoClassifier
    from tadlab.models.bmn import CPU_CONFIG

    if family not in COST_FAMILIES:
        raise ValueError(f"unknown family {family!r}; the benchmark builds {COST_FAMILIES}")
    C, K, T = world.feature_dim, world.num_classes, world.num_snippets
    if family == "actionformer":
        return ActionFormer(C, K, center_features=True)
    if family == "bmn":
        bmn = BMN(C, T, BMN_MAX_DURATION[world.preset], **CPU_CONFIG, center_features=True)
        return ProposalDetector(bmn, VideoClassifier(C, K))
    if family == "naive":
        return SnippetClassifier(C, K)
    return TemporalContextClassifier(C, K)


def train(family: str, world, seed: int, lr: float, profile: str, device="cpu"):
    """``family`` trained on ``world``'s training videos with its recipe at ``lr``: ``(model, detect options)``."""
    seed_everything(seed)
    model = build(family, world)
    data, n = world.dataset("training"), epochs(family, world.preset, profile)
    if family == "actionformer":
        fit(model, data, epochs=n, lr=lr, seed=seed, device=device, progress=False,
            warmup_epochs=min(5.0, n / 5), **ACTIONFORMER_TRAIN)
        return model, {}
    # BMN and its video classifier train apart (the classifier: 20 epochs at lr 1e-2, batch 16), as notebook 06
    fit(model.classifier, data, epochs=20 if profile == "full" else n, lr=1e-2, batch_size=16, weight_decay=1e-4,
        seed=seed, device=device, progress=False)
    fit(model.proposer, data, epochs=n, lr=lr, seed=seed, device=device, progress=False, **BMN_TRAIN)
    return model, {"top_classes": BMN_TOP_CLASSES[world.preset]}


def chosen_lr(family: str, preset: str, profile: str) -> float:
    """The learning rate with the best validation average mAP in this profile's ``08_recipe_validation.json``."""
    from tadlab.experiments import load_runs

    rows = load_runs(results_dir(profile) / "08_recipe_validation.json")
    scores = {lr: rows[f"{family}, {preset}, lr {lr:g}"].mean() for lr in LRS[family]}
    return max(scores, key=lambda lr: (scores[lr], -LRS[family].index(lr)))


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job.startswith("cost_"):
        _, family, preset = job.split("_")
        return {f"{family}, {preset}": cost(family, preset, profile, device)}
    for family in ("actionformer", "bmn"):
        for preset in PRESETS:
            for lr in LRS[family]:
                if job == recipe_job(family, preset, lr):
                    world = standard_world(preset, profile, seed)
                    model, detect = train(family, world, seed, lr, profile, device)
                    return {f"{family}, {preset}, lr {lr:g}": detection_metrics(
                        model, world, TIOU[preset], "validation", device, **detect)}
            if job == f"{family}_{preset}":
                lr = chosen_lr(family, preset, profile)
                world = standard_world(preset, profile, seed)
                model, detect = train(family, world, seed, lr, profile, device)
                metrics = detection_metrics(model, world, TIOU[preset], "testing", device,
                                            bootstrap=BOOTSTRAP if profile == "full" else 0,
                                            duration_edges=DURATION_EDGES[preset], **detect)
                return {f"{preset}: {family}": metrics, "meta": {"lr": lr, "epochs": epochs(family, preset, profile)}}
    raise ValueError(f"unknown job {job!r} of study 'benchmark'")


def _rss_mb() -> float:
    """This process's resident memory now, MB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def cost(family: str, preset: str, profile: str, device="cpu", videos: int = 50) -> dict:
    """What ``family`` costs on ``preset``'s world, on one CPU thread: ``params``, ``gflops`` (forward, one video),
    ``train_cpu_s_per_epoch`` (one epoch over the training videos at the family's batch size, CPU time, so other
    processes on the machine do not count), ``inference_cpu_ms_per_video`` (forward and decoding of ``videos``
    testing videos, CPU time) and ``peak_train_mb`` (the training's peak resident memory above the process's before
    the model was built; the job runs in its own process)."""
    from tadlab.models.blocks import forward_cost

    torch.set_num_threads(1)
    world = standard_world(preset, profile, 0)
    before = _rss_mb()
    seed_everything(0)
    model = build(family, world)
    counted = forward_cost(model, world.num_snippets, grad=True)
    batch = {"actionformer": ACTIONFORMER_TRAIN["batch_size"], "bmn": BMN_TRAIN["batch_size"]}.get(family, 16)
    data = world.dataset("training")
    started = time.process_time()
    fit(model if family != "bmn" else model.proposer, data, epochs=1, batch_size=batch, lr=1e-3, seed=0,
        device=device, progress=False)
    train_s = time.process_time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    items = list(world.dataset("testing"))[:videos]
    detect = {"top_classes": BMN_TOP_CLASSES[preset]} if family == "bmn" else {}
    started = time.process_time()
    predict(model, items, device=device, **detect)
    infer_ms = (time.process_time() - started) / len(items) * 1000
    return {"params": counted["params"], "gflops": counted["flops"] / 1e9, "train_cpu_s_per_epoch": train_s,
            "training_videos": len(data), "inference_cpu_ms_per_video": infer_ms, "peak_train_mb": peak - before,
            "num_snippets": world.num_snippets}
