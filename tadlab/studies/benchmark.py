"""Notebook 08's experiments: every family side by side on both presets, and what each costs.

The families' own notebooks store their headline rows on the preset they teach (GSMT on anet, SP-TAD on thumos,
BMN + RRM and SegTAD on anet; notebook 01's baselines on both): this study adds what the side-by-side table lacks,
on the same worlds (``standard_world(preset, "full", seed)``) and testing videos, so every row pairs seed by seed:

- ``08_recipe_validation.json``: the learning rate of each family tuned here, on validation (seed 0): the one-stage
  reference on both presets, SP-TAD on anet (:data:`LRS`);
- ``08_benchmark.json`` (:data:`HEADLINE_SEEDS`): the one-stage reference (:class:`~tadlab.models.ActionFormer`) on
  both presets, BMN (with its video-level classifier, BMN's Soft-NMS; notebook 06's recipe) and GSMT (notebook 04's
  recipe, its two decodings) on thumos;
- ``08_second_preset.json`` (:data:`ABLATION_SEEDS`): SegTAD (notebook 07's recipe) on thumos, SP-TAD on whole anet
  videos (notebook 05's model, the clips' warm-up; lr chosen here);
- ``08_cost.json``: per family and preset, parameters, forward GFLOPs per video, training CPU-seconds per epoch,
  inference CPU-milliseconds per video (forward and decoding, one thread) and the training's peak memory, each
  measured in its own process (:func:`cost`).

BMN + RRM on anet is notebook 06's ``06_headline.json`` (the same function trains BMN there); the RRM was not run
on thumos (time). SegTAD's rows in the table (:data:`ROWS`) are notebook 07's ``07_class_sources.json`` (5 seeds,
both presets, classes from a video classifier as the paper's and from the 1D-SSN); ``08_second_preset.json``'s
SegTAD job holds the 1D-SSN reading on thumos' first three seeds, and its section-8 diagnosis.
"""
from __future__ import annotations

import resource
import time

import torch

from tadlab.diagnostics import DURATION_EDGES
from tadlab.eval import ANET_TIOU, THUMOS_TIOU
from tadlab.experiments import ABLATION_SEEDS, HEADLINE_SEEDS, detection_metrics, standard_world
from tadlab.studies import Result, results_dir
from tadlab.train import fit, predict
from tadlab.utils import seed_everything

NOTEBOOK = "08"
PRESETS = ("thumos", "anet")
TIOU = {"thumos": THUMOS_TIOU, "anet": ANET_TIOU}
BOOTSTRAP = 100
NAMES = {"naive": "naive", "context": "temporal context", "actionformer": "ActionFormer-style", "bmn": "BMN",
         "bmn_rrm": "BMN + RRM", "gsmt": "GSMT", "sptad": "SP-TAD", "segtad": "SegTAD"}
# ActionFormer: AdamW (weight decay 0.05), batch 4, clipping at 1, linear warm-up then cosine, as its release; the
# epochs were chosen on the ci worlds' validation videos (tests/test_actionformer.py's helper sweep: thumos 60,
# anet 30), the learning rate here on the full worlds' validation videos.
ACTIONFORMER_EPOCHS = {"thumos": 60, "anet": 30}
ACTIONFORMER_TRAIN = dict(batch_size=4, weight_decay=0.05, clip_grad_norm=1.0, schedule="cosine")
# BMN: notebook 06's recipe (AdamW, lr 3e-3, batch 8, weight decay 1e-4, cosine, 15 epochs; the video classifier
# 20 epochs at lr 1e-2, batch 16); the longest proposal D: the whole video on anet, 64 snippets (about 50 s) on thumos
BMN_EPOCHS, BMN_LR, BMN_TRAIN = 15, 3e-3, dict(batch_size=8, weight_decay=1e-4)
BMN_MAX_DURATION = {"thumos": 64, "anet": 100}
BMN_TOP_CLASSES = {"thumos": 2, "anet": 1}  # thumos videos may hold two classes (14-19 % of THUMOS14's)
LRS = {("actionformer", "thumos"): (1e-3, 3e-3), ("actionformer", "anet"): (1e-3, 3e-3),
       ("sptad", "anet"): (1e-3, 3e-3)}
SHORT = {"smoke": 1, "ci": 5}  # epochs at the small profiles (the DAG runs; nothing is learnt)
COST_FAMILIES = ("naive", "context", "actionformer", "bmn", "bmn_rrm", "gsmt", "sptad", "segtad")
BENCHMARK_JOBS = ("actionformer_thumos", "actionformer_anet", "bmn_thumos", "gsmt_thumos")
SECOND_PRESET_JOBS = ("segtad_thumos", "sptad_anet")


def recipe_job(family: str, preset: str, lr: float) -> str:
    return f"{family}_{preset}_lr{lr:g}"


def recipe_row(family: str, preset: str, lr: float) -> str:
    return f"{family}, {preset}, lr {lr:g}"


RESULTS = [
    Result("08_recipe_validation.json", seeds=(0,), subset="validation",
           jobs=tuple(recipe_job(f, p, lr) for (f, p), lrs in LRS.items() for lr in lrs)),
    Result("08_benchmark.json", jobs=BENCHMARK_JOBS, seeds=HEADLINE_SEEDS, needs=("08_recipe_validation.json",)),
    Result("08_second_preset.json", jobs=SECOND_PRESET_JOBS, seeds=ABLATION_SEEDS,
           needs=("08_recipe_validation.json",)),
    Result("08_cost.json", jobs=tuple(f"cost_{f}_{p}" for f in COST_FAMILIES for p in PRESETS), seeds=(0,)),
]


def epochs(family: str, preset: str, profile: str) -> int:
    """Training epochs of the one-stage reference and of BMN (the other families' come from their own studies)."""
    full = ACTIONFORMER_EPOCHS[preset] if family == "actionformer" else BMN_EPOCHS
    return full if profile == "full" else SHORT[profile]


def build(family: str, world, profile: str = "full") -> torch.nn.Module:
    """An untrained model of ``family`` at the configuration its rows use, for ``world`` (SP-TAD on thumos: the
    clip model inside its :class:`~tadlab.windows.SlidingWindowDetector`)."""
    from tadlab.models import ActionFormer, BMN, GSMT, SPTAD, ProposalDetector, SegTAD, SnippetClassifier
    from tadlab.models import TemporalContextClassifier, VideoClassifier
    from tadlab.models.bmn import CPU_CONFIG
    from tadlab.studies import gsmt, rrm, segtad, sptad

    if family not in COST_FAMILIES:
        raise ValueError(f"unknown family {family!r}; the benchmark builds {COST_FAMILIES}")
    C, K, T, preset = world.feature_dim, world.num_classes, world.num_snippets, world.preset
    if family == "actionformer":
        return ActionFormer(C, K, center_features=True)
    if family == "bmn":
        return ProposalDetector(BMN(C, T, BMN_MAX_DURATION[preset], **CPU_CONFIG, center_features=True),
                                VideoClassifier(C, K))
    if family == "bmn_rrm":
        return rrm.detector(C, K, T, BMN_MAX_DURATION[preset], iterations=rrm.ITERATIONS)
    if family == "gsmt":
        return GSMT(C, K, T, **gsmt.gsmt_options(profile))
    if family == "segtad":
        return SegTAD(C, K, T, **segtad.recipe(preset, profile)["config"])
    if family == "sptad":
        return _sptad(world)
    return SnippetClassifier(C, K) if family == "naive" else TemporalContextClassifier(C, K)


def _sptad(world):
    """SP-TAD as this study runs it: on 32-snippet clips on thumos (notebook 05's), on whole videos on anet."""
    from tadlab.models import SPTAD
    from tadlab.studies import sptad
    from tadlab.windows import SlidingWindowDetector

    if world.preset == "anet":
        return SPTAD(world.feature_dim, world.num_classes, **sptad.MODEL)
    inner = SPTAD(world.feature_dim, world.num_classes, **sptad.WINDOW_MODEL)
    windows = sptad.WINDOWS
    return SlidingWindowDetector(inner, windows["length"], windows["test_stride"], center_features=True)


def train(family: str, world, seed: int, lr: float | None, profile: str, device="cpu"):
    """``family`` trained on ``world``'s training videos with its recipe (``lr``: the reference's and SP-TAD's on
    anet, chosen here; None: the family's own): ``(model, detect options, history)``."""
    from tadlab.studies import gsmt, segtad, sptad

    preset = world.preset
    if family == "gsmt":
        model, history = gsmt.train_gsmt(world, seed, profile, device)
        return model, {}, history
    if family == "segtad":
        model, history = segtad.train_segtad(world, preset, profile, seed, device=device)
        return model, segtad.DETECT, history
    if family == "sptad" and preset == "anet":  # notebook 05's model, with the clips' warm-up epoch
        from tadlab.sptad_study import LONG_EPOCHS, train_sptad

        model, history = train_sptad(world, seed, LONG_EPOCHS[profile], lr, device, train=sptad.WINDOW_TRAIN)
        return model, {}, history
    seed_everything(seed)
    model = build(family, world, profile)
    data, n = world.dataset("training"), epochs(family, preset, profile)
    if family == "actionformer":
        history = fit(model, data, epochs=n, lr=lr, seed=seed, device=device, progress=False,
                      warmup_epochs=min(5.0, n / 5), **ACTIONFORMER_TRAIN)
        return model, {}, history
    if family != "bmn":
        raise ValueError(f"this study trains actionformer, bmn, gsmt, segtad and sptad (anet), not {family!r}")
    # BMN and its video classifier train apart (the classifier: 20 epochs at lr 1e-2, batch 16), as notebook 06
    train_video_classifier(model.classifier, world, seed, profile, device)
    history = fit(model.proposer, data, epochs=n, lr=BMN_LR if lr is None else lr, seed=seed, device=device,
                  progress=False, **BMN_TRAIN)
    return model, {"top_classes": BMN_TOP_CLASSES[preset]}, history


def train_video_classifier(classifier, world, seed: int, profile: str, device="cpu"):
    """Train a :class:`~tadlab.models.VideoClassifier` on ``world``'s training videos as BMN's (notebook 06): 20
    epochs at "full" (:data:`SHORT` otherwise), lr 1e-2, batch 16, weight decay 1e-4. Returns its history."""
    return fit(classifier, world.dataset("training"), epochs=20 if profile == "full" else SHORT[profile], lr=1e-2,
               batch_size=16, weight_decay=1e-4, seed=seed, device=device, progress=False)


def measure(family: str, model, world, profile: str, device="cpu", **detect) -> dict:
    """The trained model's rows on testing ("PRESET: NAME": metrics, as notebook 01's): GSMT decoded by its masks
    and by its class map, SegTAD read notebook 07's three ways, every other family one row."""
    from tadlab.studies import gsmt, segtad

    preset, full = world.preset, profile == "full"
    if family == "gsmt":
        rows = gsmt.headline_rows(model, world, device, bootstrap=BOOTSTRAP if full else 0)
        return {f"{preset}: {row}": metrics for row, metrics in rows.items()}
    if family == "segtad":
        return segtad.readings(model, world, preset, profile, device, prefix=f"{preset}: ")
    metrics = detection_metrics(model, world, TIOU[preset], "testing", device, bootstrap=BOOTSTRAP if full else 0,
                                duration_edges=DURATION_EDGES[preset], **detect)
    return {f"{preset}: {NAMES[family]}": metrics}


def chosen_lr(family: str, preset: str, profile: str) -> float:
    """The learning rate with the best validation average mAP in this profile's ``08_recipe_validation.json``."""
    from tadlab.experiments import load_runs

    rows, lrs = load_runs(results_dir(profile) / "08_recipe_validation.json"), LRS[family, preset]
    scores = {lr: rows[recipe_row(family, preset, lr)].mean() for lr in lrs}
    return max(scores, key=lambda lr: (scores[lr], -lrs.index(lr)))


def _final_loss(history) -> float:
    return float(history.train["total"][-1])


def run(job: str, seed: int, profile: str, device="cpu") -> dict:
    if job.startswith("cost_"):
        family, preset = job.removeprefix("cost_").rsplit("_", 1)
        return {f"{family}, {preset}": cost(family, preset, profile, device)}
    for (family, preset), lrs in LRS.items():
        for lr in lrs:
            if job == recipe_job(family, preset, lr):
                world = standard_world(preset, profile, seed)
                model, detect, history = train(family, world, seed, lr, profile, device)
                row = detection_metrics(model, world, TIOU[preset], "validation", device, **detect)
                return {recipe_row(family, preset, lr): {**row, "final_loss": _final_loss(history)}}
    if job not in BENCHMARK_JOBS + SECOND_PRESET_JOBS:
        raise ValueError(f"unknown job {job!r} of study 'benchmark'")
    family, preset = job.split("_")
    lr = chosen_lr(family, preset, profile) if (family, preset) in LRS else None
    world = standard_world(preset, profile, seed)
    started = time.perf_counter()
    model, detect, history = train(family, world, seed, lr, profile, device)
    seconds = time.perf_counter() - started
    rows = measure(family, model.eval(), world, profile, device, **detect)
    return {**rows, "meta": {"lr": lr, "training_seconds": seconds, "final_loss": _final_loss(history),
                             "epochs": len(history.train["total"])}}


def _peak_mb(reset: bool = False) -> float:
    """This process's peak resident memory (Linux ``VmHWM``), MB; ``reset`` first restarts the peak from the
    current resident memory (``/proc/self/clear_refs``), so that building the world before does not count."""
    if reset:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024


def _rss_mb() -> float:
    """This process's resident memory now, MB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _one_epoch(family: str, model, world, profile: str):
    """What one training epoch of ``family`` fits: ``(module, items, fit options without lr)``."""
    from tadlab.studies import gsmt, segtad, sptad
    from tadlab.sptad_study import TRAIN as SPTAD_TRAIN

    data = world.dataset("training")
    if family in ("bmn", "bmn_rrm"):
        if family == "bmn_rrm":  # the RRM's own stage: trained on the frozen BMN (notebook 06)
            model.requires_grad_(False)
            model.proposer.refine.requires_grad_(True)
        return model.proposer, data, BMN_TRAIN
    if family == "actionformer":
        return model, data, ACTIONFORMER_TRAIN
    if family == "gsmt":
        return model, data, {k: v for k, v in gsmt.train_options(profile).items() if k != "lr"}
    if family == "segtad":
        return model, data, {k: v for k, v in segtad.TRAIN.items() if k != "lr"}
    if family == "sptad":
        if world.preset == "thumos":
            return model.model, sptad.subset_windows(world, "training", sptad.WINDOWS["train_stride"]), SPTAD_TRAIN
        return model, data, SPTAD_TRAIN
    return model, data, {"batch_size": 16}


def cost(family: str, preset: str, profile: str, device="cpu", videos: int = 50) -> dict:
    """What ``family`` costs on ``preset``'s world, on one CPU thread: ``params``, ``gflops`` (forward, one video),
    ``train_cpu_s_per_epoch`` (one epoch over the training videos, or SP-TAD's clips on thumos, at the family's batch
    size, CPU time, so other processes on the machine do not count; BMN + RRM: the RRM's stage on the frozen BMN),
    ``inference_cpu_ms_per_video`` (forward and decoding of ``videos`` testing videos, CPU time) and
    ``peak_train_mb`` (the peak resident memory while the model is built and trained one epoch, above the process's
    before, the world's features already made; the job runs in its own process)."""
    from tadlab.models.blocks import forward_cost
    from tadlab.studies import gsmt, segtad

    torch.set_num_threads(1)
    world = standard_world(preset, profile, 0)
    before = _rss_mb()  # the world's features are made with the world, before the peak is reset
    _peak_mb(reset=True)
    seed_everything(0)
    model = build(family, world, profile)
    counted = forward_cost(model, world.num_snippets, grad=True)
    module, data, options = _one_epoch(family, model, world, profile)
    started = time.process_time()
    fit(module, data, epochs=1, lr=1e-3, seed=0, device=device, progress=False, **options)
    train_s = time.process_time() - started
    peak = _peak_mb()
    items = list(world.dataset("testing"))[:videos]
    detect = {"bmn": {"top_classes": BMN_TOP_CLASSES[preset]}, "bmn_rrm": {"top_classes": BMN_TOP_CLASSES[preset]},
              "gsmt": gsmt.mask_detect(preset), "segtad": segtad.DETECT}.get(family, {})
    started = time.process_time()
    predict(model.eval(), items, device=device, **detect)
    infer_ms = (time.process_time() - started) / len(items) * 1000
    return {"params": counted["params"], "gflops": counted["flops"] / 1e9, "train_cpu_s_per_epoch": train_s,
            "training_items": len(data), "inference_cpu_ms_per_video": infer_ms, "peak_train_mb": peak - before,
            "num_snippets": world.num_snippets}


# Notebook 08's table: every family's stored rows on each preset, all on notebook 01's worlds (the same seeds, the
# same testing videos): display name -> (results file, row name in it). SegTAD takes its classes from a video
# classifier, as its paper does (Sec. 3.4); its 1D-SSN's own video classes (notebook 07's decoding) are the row
# beside it, from the same trained models.
ROWS = {
    "thumos": {"naive": ("01_baselines.json", "thumos: naive"),
               "temporal context": ("01_baselines.json", "thumos: context"),
               "class-map grouping": ("01_baselines.json", "thumos: class map grouping"),
               "GSMT": ("08_benchmark.json", "thumos: GSMT"),
               "GSMT, class-map decoding": ("08_benchmark.json", "thumos: GSMT, class-map decoding"),
               "SP-TAD (clips)": ("05_windows.json", "SP-TAD (windows)"),
               "BMN": ("08_benchmark.json", "thumos: BMN"),
               "SegTAD": ("07_class_sources.json", "thumos: SegTAD, classes from a video classifier"),
               "SegTAD, 1D-SSN classes": ("07_class_sources.json", "thumos: SegTAD"),
               "ActionFormer-style": ("08_benchmark.json", "thumos: ActionFormer-style")},
    "anet": {"naive": ("01_baselines.json", "anet: naive"),
             "temporal context": ("01_baselines.json", "anet: context"),
             "class-map grouping": ("01_baselines.json", "anet: class map grouping"),
             "GSMT": ("04_headline.json", "anet: GSMT"),
             "GSMT, class-map decoding": ("04_headline.json", "anet: GSMT, class-map decoding"),
             "SP-TAD": ("08_second_preset.json", "anet: SP-TAD"),
             "BMN": ("06_headline.json", "BMN"),
             "BMN + RRM x3": ("06_headline.json", "BMN + RRM x3"),
             "SegTAD": ("07_class_sources.json", "anet: SegTAD, classes from a video classifier"),
             "SegTAD, 1D-SSN classes": ("07_class_sources.json", "anet: SegTAD"),
             "ActionFormer-style": ("08_benchmark.json", "anet: ActionFormer-style")},
}
REFERENCE, BEST_BASELINE = "ActionFormer-style", "class-map grouping"
# Average mAP (%) the papers report on the real benchmarks (THUMOS14: tIoU 0.3:0.7, testing; ActivityNet-1.3:
# 0.5:0.95, validation), for the families of ROWS: (value, where it is printed)
PAPERS = {
    "thumos": {"ActionFormer-style": (66.8, "ActionFormer (Zhang et al., ECCV 2022), THUMOS14 results, I3D"),
               "GSMT": (51.6, "GSMT Table 1, I3D"),
               "SP-TAD (clips)": (53.5, "SP-TAD Table 1"),
               "BMN": (38.5, "GSMT Table 1 (BMN, two-stream)")},
    "anet": {"ActionFormer-style": (36.6, "ActionFormer (ECCV 2022), abstract and ActivityNet results, TSP"),
             "GSMT": (36.2, "GSMT Table 1, I3D"),
             "SP-TAD": (32.99, "SP-TAD Table 2"),
             "BMN": (33.85, "SP-TAD Table 2, SegTAD Table 1"),
             "SegTAD": (33.99, "SegTAD Table 1, top-2 classes")},
}


def stored_rows(preset: str, profile: str = "full") -> dict:
    """``{display name: SeedRuns}`` of :data:`ROWS` for ``preset``, read from ``profile``'s results files."""
    from tadlab.experiments import SeedRuns, load_runs

    if preset not in ROWS:
        raise ValueError(f"preset must be one of {list(ROWS)}, got {preset!r}")
    files, rows = {}, {}
    for name, (file, row) in ROWS[preset].items():
        if file not in files:
            files[file] = load_runs(results_dir(profile) / file)
        stored = files[file][row]
        rows[name] = SeedRuns(name, stored.seeds, stored.metrics, stored.subset, stored.config)
    return rows


