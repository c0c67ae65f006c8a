"""One experiment protocol for every notebook: a recipe over seeds, per-seed metrics, mean ± std, JSON.

A *recipe* runs one seed (the seed varies the world sample and the initialisation) and returns one row of
metrics per thing it measured, so one training can give several rows (the same model decoded two ways)::

    def recipe(seed):
        world = make_world("anet", 300, seed=seed)
        model = GSMT(...)
        fit(model, world.dataset("training"), seed=seed, ...)          # choose recipes on "validation"
        return {"GSMT": detection_metrics(model, world, ANET_TIOU)}    # report on "testing"

    runs = run_seeds(recipe, seeds=[0, 1, 2])          # {"GSMT": SeedRuns}
    print(results_table(runs.values()))                 # mean ± sample std (ddof = 1) and per-seed values
    save_runs(RESULTS_DIR / "04_headline.json", runs.values(), notebook="04", profile="full")
    runs = load_runs(RESULTS_DIR / "04_headline.json")  # the stored rows, to print in the notebook

:func:`baseline_rows` trains the three baselines every detector is compared with (naive per-snippet, temporal
context, class-map grouping) in one call, so a notebook's headline comparison stays a few lines.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUBSETS = ("training", "validation", "testing")
# The checkout's results/: the full-profile rows the notebooks store and load. Found through this module rather
# than the working directory, so a copy of a notebook run elsewhere (a student's copy) loads the same rows.
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
PROFILES = ("smoke", "ci", "full")
# Videos per split of the world at each profile, shared by every notebook so that stored rows (results/) compare
# like with like: (training, validation, testing). At "full" the testing split is large enough that the
# evaluation's own sampling error (a bootstrap over the testing videos, :func:`bootstrap_error`) stays under 0.01
# average mAP, so that seeds, not the choice of test videos, make the spread; training and validation keep the
# sizes every recipe was chosen at (THUMOS14 has about 200 videos per split, ActivityNet-1.3 thousands).
WORLD_SPLITS = {"smoke": {"thumos": (9, 3, 3), "anet": (9, 3, 3)},
                "ci": {"thumos": (72, 24, 24), "anet": (90, 30, 30)},
                "full": {"thumos": (240, 80, 1800), "anet": (300, 100, 800)}}
# Seeds of a headline row and of an ablation row at "full" (an ablation's seeds are the first of its headline's)
HEADLINE_SEEDS, ABLATION_SEEDS = (0, 1, 2, 3, 4), (0, 1, 2)
# Epochs of the baselines (lr 3e-3) per profile and preset; at "full" the best of notebook 01's grid on validation.
BASELINE_EPOCHS = {"smoke": {"thumos": 1, "anet": 1}, "ci": {"thumos": 40, "anet": 20},
                   "full": {"thumos": 50, "anet": 50}}


def standard_world(preset: str, profile: str, seed: int, *, training_factor: int = 1, **overrides):
    """The world every notebook uses at ``profile`` ("smoke", "ci" or "full"): :func:`make_world` of ``seed`` with
    the split sizes ``WORLD_SPLITS[profile][preset]`` (``overrides`` pass through). ``training_factor`` multiplies
    the training videos only (a "more data" ablation); validation and testing keep their sizes."""
    from tadlab.data.synthetic import make_world

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    if preset not in WORLD_SPLITS[profile]:
        raise ValueError(f"preset must be one of {sorted(WORLD_SPLITS[profile])}, got {preset!r}")
    if isinstance(training_factor, bool) or not isinstance(training_factor, int) or training_factor < 1:
        raise ValueError(f"training_factor must be a positive int, got {training_factor!r}")
    for name in ("validation_fraction", "testing_fraction"):
        if name in overrides:
            raise ValueError(f"standard_world sets {name} from WORLD_SPLITS; call make_world to choose it")
    training, validation, testing = WORLD_SPLITS[profile][preset]
    total = training * training_factor + validation + testing
    return make_world(preset, total, seed=seed, validation_fraction=validation / total,
                      testing_fraction=testing / total, **overrides)


@dataclass
class SeedRuns:
    """One row of an experiment: the metrics of each seed.

    ``metrics[i]`` is the JSON-able dict of ``seeds[i]`` (e.g. ``{"average_mAP": 0.34, "mAP": [...]}``);
    ``subset`` is the split they were measured on; ``config`` anything that describes the row.
    """

    name: str
    seeds: list
    metrics: list
    subset: str = "testing"
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.seeds) != len(self.metrics):
            raise ValueError(f"row {self.name!r}: {len(self.seeds)} seeds but {len(self.metrics)} metric dicts")
        if self.subset not in SUBSETS:
            raise ValueError(f"row {self.name!r}: subset must be one of {list(SUBSETS)}, got {self.subset!r}")

    def values(self, key: str = "average_mAP") -> np.ndarray:
        """The per-seed values of a scalar metric ``key``, ``(S,)`` float64."""
        missing = [s for s, m in zip(self.seeds, self.metrics) if key not in m]
        if missing:
            raise KeyError(f"row {self.name!r} has no metric {key!r} for seeds {missing}; "
                           f"it has {sorted(self.metrics[0]) if self.metrics else []}")
        return np.array([float(m[key]) for m in self.metrics])

    def mean(self, key: str = "average_mAP") -> float:
        return float(self.values(key).mean())

    def std(self, key: str = "average_mAP") -> float:
        """Sample standard deviation (ddof = 1) over seeds; NaN for a single seed."""
        values = self.values(key)
        return float(values.std(ddof=1)) if len(values) > 1 else math.nan

    def summary(self, key: str = "average_mAP", digits: int = 3) -> str:
        """``"0.344 ± 0.022"`` (mean ± sample std), or the value alone for a single seed."""
        values = self.values(key)
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"

    def to_dict(self) -> dict:
        return {"name": self.name, "seeds": list(self.seeds), "subset": self.subset, "config": self.config,
                "metrics": self.metrics}

    @classmethod
    def from_dict(cls, data: Mapping) -> "SeedRuns":
        missing = [key for key in ("name", "seeds", "metrics") if key not in data]
        if missing:
            raise ValueError(f"a stored row lacks {missing}; expected name, seeds, metrics, subset, config")
        return cls(data["name"], list(data["seeds"]), list(data["metrics"]), data.get("subset", "testing"),
                   dict(data.get("config", {})))


def on_seeds(row: SeedRuns, seeds, name: str | None = None) -> SeedRuns:
    """``row`` restricted to ``seeds``, in their order (to pair a 5-seed row with a 3-seed one: a seed draws the
    world, so the same seeds are the same testing videos), renamed ``name`` if given; a ValueError names the seeds
    the row lacks."""
    missing = sorted(set(seeds) - set(row.seeds))
    if missing:
        raise ValueError(f"row {row.name!r} has no seeds {missing}")
    return SeedRuns(row.name if name is None else name, list(seeds),
                    [row.metrics[row.seeds.index(s)] for s in seeds], row.subset, row.config)


def run_seeds(recipe: Callable[[int], Mapping], seeds: Iterable[int], *, subset: str = "testing",
              configs: Mapping | None = None) -> dict:
    """Run ``recipe(seed)`` for every seed and gather its rows: ``{row name: SeedRuns}`` in the recipe's order.

    ``recipe`` returns ``{row name: metrics dict}``; every seed must return the same rows. ``configs`` maps row
    names to a description stored with them. Each row's metrics gain ``"seconds"`` (the recipe's wall time for
    that seed, shared by its rows) unless the recipe set it.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    rows: dict[str, list] = {}
    for seed in seeds:
        started = time.perf_counter()
        result = recipe(seed)
        seconds = time.perf_counter() - started
        if not isinstance(result, Mapping) or not result or not all(isinstance(m, Mapping) for m in result.values()):
            raise TypeError(f"recipe({seed}) must return {{row name: metrics dict}}, got {type(result).__name__}")
        if rows and list(result) != list(rows):
            raise ValueError(f"recipe({seed}) returned rows {list(result)}, earlier seeds {list(rows)}")
        for name, metrics in result.items():
            rows.setdefault(name, []).append({"seconds": seconds, **_jsonable(metrics)})
    configs = dict(configs or {})
    return {name: SeedRuns(name, seeds, metrics, subset, dict(configs.get(name, {}))) for name, metrics in rows.items()}


@dataclass(frozen=True)
class PairedDifference:
    """Row ``a`` minus row ``b`` seed by seed (the same seeds: same worlds, same testing videos), for one metric.

    ``differences`` (S,) per seed in ``seeds`` order; ``mean``; ``low``, ``high``: the ``confidence`` interval of the
    mean difference from Student's t with S - 1 degrees of freedom (NaN for one seed); ``wins``: the seeds where
    ``a`` is higher.
    """

    a: str
    b: str
    key: str
    seeds: tuple
    differences: np.ndarray
    confidence: float = 0.95

    @property
    def mean(self) -> float:
        return float(self.differences.mean())

    @property
    def interval(self) -> tuple[float, float]:
        from scipy import stats

        n = len(self.differences)
        if n < 2:
            return math.nan, math.nan
        half = stats.t.ppf(0.5 + self.confidence / 2, n - 1) * self.differences.std(ddof=1) / math.sqrt(n)
        return self.mean - float(half), self.mean + float(half)

    @property
    def wins(self) -> int:
        return int((self.differences > 0).sum())

    def __str__(self) -> str:
        low, high = self.interval
        return (f"{self.a} - {self.b}: {self.mean:+.3f} [{low:+.3f}, {high:+.3f}] ({self.confidence:.0%} interval), "
                f"higher on {self.wins} of {len(self.differences)} seeds")


def paired_difference(a: SeedRuns, b: SeedRuns, key: str = "average_mAP", confidence: float = 0.95) -> PairedDifference:
    """``a - b`` seed by seed, its mean and ``confidence`` interval, and on how many seeds ``a`` is higher.

    Rows compare only over the same seeds (a seed draws the world, so its testing videos): a ValueError names the
    seeds that differ. The same metric must be measured on the same subset.
    """
    if set(a.seeds) != set(b.seeds) or len(a.seeds) != len(set(a.seeds)):
        raise ValueError(f"paired_difference needs the same seeds, each once: {a.name!r} has {a.seeds}, "
                         f"{b.name!r} has {b.seeds}")
    if a.subset != b.subset:
        raise ValueError(f"rows measured on different subsets: {a.name!r} on {a.subset!r}, {b.name!r} on {b.subset!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    seeds = tuple(sorted(a.seeds))
    values_a = dict(zip(a.seeds, a.values(key)))
    values_b = dict(zip(b.seeds, b.values(key)))
    differences = np.array([values_a[s] - values_b[s] for s in seeds])
    return PairedDifference(a.name, b.name, key, seeds, differences, confidence)


def paired_table(rows: Iterable[SeedRuns], reference: SeedRuns, key: str = "average_mAP", digits: int = 3) -> str:
    """One line per row: its mean ± std, and its paired difference with ``reference`` (mean, 95 % interval, seeds
    where it is higher)."""
    rows = [r for r in rows if r.name != reference.name]
    width = max([len(r.name) for r in rows] + [len(reference.name)])
    lines = [f"{'':{width}}  {key:>{7 + 2 * digits}}  minus {reference.name!r}: mean [95 % interval], higher on"]
    lines.append(f"{reference.name:{width}}  {reference.summary(key, digits):>{7 + 2 * digits}}")
    for row in rows:
        d = paired_difference(row, reference, key)
        low, high = d.interval
        lines.append(f"{row.name:{width}}  {row.summary(key, digits):>{7 + 2 * digits}}  "
                     f"{d.mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}], {d.wins} of {len(d.seeds)} seeds")
    return "\n".join(lines)


def bootstrap_error(ground_truth, results, tiou_thresholds, subset: str = "testing", samples: int = 100,
                    seed: int = 0) -> float:
    """The evaluation's own sampling error: the standard deviation of average mAP over ``samples`` resamplings of
    the ``subset`` videos with replacement (a video drawn twice counts twice, under two ids), the results fixed.

    ``ground_truth`` and ``results``: what :func:`tadlab.eval.evaluate_detection` takes (paths, ActivityNet-style
    dicts, or the loaded dicts :func:`tadlab.train.detection_results` returns).
    """
    import dataclasses

    from tadlab.data.schema import VideoDetections, as_ground_truth, load_results
    from tadlab.eval import evaluate_detection

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an int >= 2, got {samples!r}")
    truth = {v: a for v, a in as_ground_truth(ground_truth).items() if a.subset == subset}
    if not truth:
        raise ValueError(f"the ground truth has no video of subset {subset!r}")
    if not (isinstance(results, Mapping) and results and all(isinstance(d, VideoDetections) for d in results.values())):
        results = load_results(results)
    videos = sorted(truth)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        gt, res = {}, {}
        for copy, index in enumerate(rng.choice(len(videos), size=len(videos), replace=True)):
            video = videos[index]
            name = f"{video}#{copy}"
            gt[name] = dataclasses.replace(truth[video], video_id=name)
            if video in results:
                res[name] = dataclasses.replace(results[video], video_id=name)
        with warnings.catch_warnings():  # a resample without some class ignores its predictions: expected here
            warnings.simplefilter("ignore")
            values.append(evaluate_detection(gt, res, tiou_thresholds=tiou_thresholds, subset=subset).average_mAP)
    return float(np.std(values, ddof=1))


def results_table(runs: Iterable[SeedRuns], keys=("average_mAP",), per_seed: bool = True, digits: int = 3) -> str:
    """A compact text table: one line per row, ``mean ± std`` per key, then the per-seed values of the first key."""
    runs = list(runs)
    if not runs:
        raise ValueError("results_table needs at least one row")
    keys = [keys] if isinstance(keys, str) else list(keys)
    width = max(len(r.name) for r in runs)
    columns = [max(len(k), 7 + 2 * digits) for k in keys]
    header = f"{'':{width}}  " + "  ".join(f"{k:>{c}}" for k, c in zip(keys, columns))
    lines = [header + ("  per seed" if per_seed else "")]
    for row in runs:
        cells = "  ".join(f"{row.summary(k, digits):>{c}}" for k, c in zip(keys, columns))
        seeds = ", ".join(f"{s}: {v:.{digits}f}" for s, v in zip(row.seeds, row.values(keys[0])))
        lines.append(f"{row.name:{width}}  {cells}" + (f"  ({seeds})" if per_seed else ""))
    subsets = sorted({r.subset for r in runs})
    lines.append(f"mean ± sample std over seeds; subset: {', '.join(subsets)}")
    return "\n".join(lines)


def save_runs(path, runs: Iterable[SeedRuns], *, overwrite: bool = False, **meta) -> Path:
    """Write rows (and ``meta``, e.g. ``notebook="04", profile="full"``) as JSON; an existing file is an error
    unless ``overwrite=True``. The file records the subset(s) under ``"subset"``."""
    runs = list(runs)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it")
    subsets = sorted({r.subset for r in runs})
    payload = {**_jsonable(meta), "subset": subsets[0] if len(subsets) == 1 else subsets,
               "runs": [r.to_dict() for r in runs]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def load_runs(path) -> dict:
    """The rows stored by :func:`save_runs`: ``{row name: SeedRuns}`` in stored order (``meta`` in ``.meta``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no stored results at {str(path)!r}; run the notebook with profile='full' "
                                f"(make notebooks PROFILE=full) to write them")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{str(path)!r} is not a results file written by save_runs (no 'runs' list)")
    rows = StoredRuns((row["name"], SeedRuns.from_dict(row)) for row in data["runs"])
    rows.meta = {k: v for k, v in data.items() if k != "runs"}
    return rows


class StoredRuns(dict):
    """``{row name: SeedRuns}`` with the file's other fields in ``meta``."""

    meta: dict


def detection_metrics(model, world, tiou_thresholds, subset: str = "testing", device="auto", bootstrap: int = 0,
                      duration_edges=None, **detect_kwargs) -> dict:
    """ActivityNet mAP of a trained ``model`` on a subset of a synthetic ``world`` (see :func:`tadlab.train.evaluate`)
    as a JSON-able dict: ``average_mAP``, ``mAP`` (per threshold), ``tiou_thresholds`` and ``subset``; with
    ``bootstrap`` > 1 also ``bootstrap_error``, the evaluation's sampling error over that many resamplings of the
    subset's videos (:func:`bootstrap_error`); with ``duration_edges`` (seconds, e.g.
    :data:`tadlab.diagnostics.DURATION_EDGES`) also ``duration``, the DETAD-style breakdown by instance length
    (:func:`tadlab.diagnostics.duration_breakdown`)."""
    from tadlab.eval import evaluate_detection
    from tadlab.train import detection_results

    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {list(SUBSETS)}, got {subset!r}")
    scored, results = detection_results(model, world.dataset(subset), world.ground_truth, world.class_names,
                                        device=device, **detect_kwargs)
    metrics = evaluate_detection(scored, results, tiou_thresholds=tiou_thresholds, subset=None)  # data's videos
    row = {"average_mAP": float(metrics.average_mAP), "mAP": [float(m) for m in metrics.mAP],
           "tiou_thresholds": [float(t) for t in metrics.tiou_thresholds], "subset": subset}
    if bootstrap:
        row["bootstrap_error"] = bootstrap_error(scored, results, tiou_thresholds, subset, samples=bootstrap)
    if duration_edges is not None:
        from tadlab.diagnostics import duration_breakdown
        from tadlab.train import predict

        items = list(world.dataset(subset))
        row["duration"] = duration_breakdown(predict(model, items, device=device, **detect_kwargs), items,
                                             duration_edges)
    return row


BASELINE_ROWS = ("naive", "context", "class map grouping")


def baseline_rows(world, tiou_thresholds, *, seed: int, epochs: int, subset: str = "testing", lr: float = 3e-3,
                  batch_size: int = 16, device="auto", models: dict | None = None, bootstrap: int = 0,
                  duration_edges=None) -> dict:
    """Train the baselines on ``world``'s training videos and measure them on ``subset``: ``{row: metrics}``.

    - ``"naive"``: :class:`~tadlab.models.SnippetClassifier`, decoded by runs of one threshold;
    - ``"context"``: :class:`~tadlab.models.TemporalContextClassifier`, decoded the same way (one change: context);
    - ``"class map grouping"``: the same trained context model, decoded by class-map grouping (one change: the
      decoder).

    Both models train with :func:`tadlab.train.fit` (AdamW, cosine schedule, weight decay 1e-2). Pass a dict as
    ``models`` to receive the trained models under "naive" and "context"; ``bootstrap`` and ``duration_edges`` add
    each row's sampling error and length breakdown (:func:`detection_metrics`).
    """
    from tadlab.models import SnippetClassifier, TemporalContextClassifier
    from tadlab.train import fit
    from tadlab.utils import seed_everything

    rows = {}
    options = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": 1e-2, "seed": seed,
               "device": device, "progress": False}
    seed_everything(seed)
    naive = SnippetClassifier(world.feature_dim, world.num_classes)
    fit(naive, world.dataset("training"), **options)
    measure = dict(subset=subset, device=device, bootstrap=bootstrap, duration_edges=duration_edges)
    rows["naive"] = detection_metrics(naive, world, tiou_thresholds, **measure, decoder="runs")
    seed_everything(seed)
    context = TemporalContextClassifier(world.feature_dim, world.num_classes)
    fit(context, world.dataset("training"), **options)
    rows["context"] = detection_metrics(context, world, tiou_thresholds, **measure, decoder="runs")
    rows["class map grouping"] = detection_metrics(context, world, tiou_thresholds, **measure, decoder="class_map")
    if models is not None:
        models.update(naive=naive, context=context)
    return rows


def _jsonable(value):
    """Numbers, strings, lists and dicts only (numpy and torch scalars become floats), for json.dumps."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 or isinstance(value, (float, np.floating)):
        return float(value)
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    raise TypeError(f"cannot store a {type(value).__name__} in a results file: {value!r}")
