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
    save_runs("../results/04_headline.json", runs.values(), notebook="04", profile="full")
    runs = load_runs("../results/04_headline.json")    # the stored rows, to print in the notebook

:func:`baseline_rows` trains the three baselines every detector is compared with (naive per-snippet, temporal
context, class-map grouping) in one call, so a notebook's headline comparison stays a few lines.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUBSETS = ("training", "validation", "testing")
PROFILES = ("smoke", "ci", "full")
# Videos per world at each profile, shared by every notebook so that stored rows (results/) compare like with like:
# 60 % training, 20 % validation, 20 % testing (the presets' split).
WORLD_VIDEOS = {"smoke": {"thumos": 15, "anet": 15}, "ci": {"thumos": 120, "anet": 150},
                "full": {"thumos": 400, "anet": 500}}
# Epochs of the baselines (lr 3e-3) per profile and preset; at "full" the best of notebook 01's grid on validation.
BASELINE_EPOCHS = {"smoke": {"thumos": 1, "anet": 1}, "ci": {"thumos": 40, "anet": 20},
                   "full": {"thumos": 50, "anet": 25}}


def standard_world(preset: str, profile: str, seed: int, **overrides):
    """The world every notebook uses at ``profile`` ("smoke", "ci" or "full"): :func:`make_world` with
    ``WORLD_VIDEOS[profile][preset]`` videos and ``seed`` (``overrides`` pass through)."""
    from tadlab.data.synthetic import make_world

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    if preset not in WORLD_VIDEOS[profile]:
        raise ValueError(f"preset must be one of {sorted(WORLD_VIDEOS[profile])}, got {preset!r}")
    return make_world(preset, WORLD_VIDEOS[profile][preset], seed=seed, **overrides)


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


def detection_metrics(model, world, tiou_thresholds, subset: str = "testing", device="auto", **detect_kwargs) -> dict:
    """ActivityNet mAP of a trained ``model`` on a subset of a synthetic ``world`` (see :func:`tadlab.train.evaluate`)
    as a JSON-able dict: ``average_mAP``, ``mAP`` (per threshold), ``tiou_thresholds`` and ``subset``."""
    from tadlab.train import evaluate

    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {list(SUBSETS)}, got {subset!r}")
    metrics = evaluate(model, world.dataset(subset), world.ground_truth, world.class_names, tiou_thresholds,
                       device=device, **detect_kwargs)
    return {"average_mAP": float(metrics.average_mAP), "mAP": [float(m) for m in metrics.mAP],
            "tiou_thresholds": [float(t) for t in metrics.tiou_thresholds], "subset": subset}


BASELINE_ROWS = ("naive", "context", "class map grouping")


def baseline_rows(world, tiou_thresholds, *, seed: int, epochs: int, subset: str = "testing", lr: float = 3e-3,
                  batch_size: int = 16, device="auto", models: dict | None = None) -> dict:
    """Train the baselines on ``world``'s training videos and measure them on ``subset``: ``{row: metrics}``.

    - ``"naive"``: :class:`~tadlab.models.SnippetClassifier`, decoded by runs of one threshold;
    - ``"context"``: :class:`~tadlab.models.TemporalContextClassifier`, decoded the same way (one change: context);
    - ``"class map grouping"``: the same trained context model, decoded by class-map grouping (one change: the
      decoder).

    Both models train with :func:`tadlab.train.fit` (AdamW, cosine schedule, weight decay 1e-2). Pass a dict as
    ``models`` to receive the trained models under "naive" and "context".
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
    rows["naive"] = detection_metrics(naive, world, tiou_thresholds, subset, device, decoder="runs")
    seed_everything(seed)
    context = TemporalContextClassifier(world.feature_dim, world.num_classes)
    fit(context, world.dataset("training"), **options)
    rows["context"] = detection_metrics(context, world, tiou_thresholds, subset, device, decoder="runs")
    rows["class map grouping"] = detection_metrics(context, world, tiou_thresholds, subset, device,
                                                   decoder="class_map")
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
