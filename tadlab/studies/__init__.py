"""Every stored result, one job at a time: the experiments of the notebooks, as the results workflow runs them.

A *study* is one notebook's experiments, in a module of this package (:mod:`tadlab.studies.baselines` for notebook
01, ...). It declares what it stores and how each piece is made::

    NOTEBOOK = "01"
    RESULTS = [Result("01_baselines.json", jobs=("thumos", "anet"), seeds=HEADLINE_SEEDS, meta={...})]

    def run(job: str, seed: int, profile: str, device="cpu") -> dict:
        '''{row name: metrics} of one job for one seed (it trains and measures; at "full" minutes, at "smoke"
        seconds); may hold "meta": {...} beside the rows, stored with them.'''

A *job* is the unit of work: one seed of one experiment, in its own process. ``python -m tadlab.studies run STUDY
JOB --seed K --profile P`` writes its rows to a *part* file (:func:`part_path`); ``merge`` gathers the parts of one
results file, job by job and seed by seed, into ``results/NAME.json`` (:func:`tadlab.experiments.save_runs`), which
the notebooks load and print. ``workflow/Snakefile`` (``make results``) runs every job of every study once, two at
a time, skipping jobs whose part exists; the notebooks at ``profile="ci"`` call the same ``run`` functions live.

Profiles: at ``"full"`` the jobs write ``results/`` (committed); at ``"smoke"`` and ``"ci"`` they write
``out/results-PROFILE/`` (or under ``$TADLAB_OUT``) and never touch the committed files. A job that needs another results file (a recipe
chosen on validation, say) names it in ``Result.needs``, so the workflow makes it first; :func:`results_dir` says
where that profile's files are.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from tadlab.experiments import PROFILES, RESULTS_DIR, SeedRuns, _jsonable, save_runs

# the modules of this package that are studies, in notebook order
STUDIES = ("baselines", "biou", "gsmt", "sptad", "rrm", "segtad", "benchmark")
ROOT = RESULTS_DIR.parent
JOB_NAME = re.compile(r"^[A-Za-z0-9_.=+-]+$")  # job names become folder names


@dataclass(frozen=True)
class Result:
    """One results file: the rows of ``jobs`` over ``seeds`` (at ``"full"``; one seed, the first, otherwise).

    ``subset``: where its rows are measured ("validation" for a recipe choice); ``meta``: stored beside the rows;
    ``needs``: results files of this profile the jobs read (made first).
    """

    name: str
    jobs: tuple
    seeds: tuple
    subset: str = "testing"
    meta: dict = field(default_factory=dict)
    needs: tuple = ()

    def __post_init__(self):
        if not self.name.endswith(".json") or "/" in self.name:
            raise ValueError(f"a results file is a plain NAME.json, got {self.name!r}")
        bad = [job for job in self.jobs if not JOB_NAME.match(job)]
        if not self.jobs or bad:
            raise ValueError(f"{self.name}: jobs must be non-empty names of letters, digits and _.=+-, got {bad}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"{self.name}: seeds must be non-negative ints, got {self.seeds!r}")

    def seeds_at(self, profile: str) -> tuple:
        """The seeds a profile runs: all of them at "full", the first elsewhere (a smoke or ci DAG shows it runs)."""
        _check_profile(profile)
        return tuple(self.seeds) if profile == "full" else tuple(self.seeds[:1])


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")


def study(name: str):
    """The study module ``tadlab.studies.NAME``."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; the studies are {list(STUDIES)}")
    return importlib.import_module(f"tadlab.studies.{name}")


def work_dir() -> Path:
    """Where parts and the smoke and ci results go: ``$TADLAB_OUT`` when set, else the checkout's ``out/``."""
    return Path(os.environ.get("TADLAB_OUT") or ROOT / "out")


def results_dir(profile: str) -> Path:
    """Where a profile's results files live: the checkout's ``results/`` at "full", ``out/results-PROFILE/``
    otherwise (:func:`work_dir`)."""
    _check_profile(profile)
    return RESULTS_DIR if profile == "full" else work_dir() / f"results-{profile}"


def part_path(profile: str, study_name: str, job: str, seed: int) -> Path:
    """The part file of one job and seed: ``out/parts/PROFILE/STUDY/JOB/seedK.json`` (:func:`work_dir`)."""
    _check_profile(profile)
    return work_dir() / "parts" / profile / study_name / job / f"seed{seed}.json"


def model_folder(profile: str, study_name: str, job: str, seed: int) -> Path:
    """Where a job exports the models it ships (:func:`export_model`): beside its part file."""
    return part_path(profile, study_name, job, seed).parent / f"seed{seed}-models"


def export_model(model, *, study_name: str, job: str, seed: int, profile: str, **entry) -> dict:
    """Export a trained model for shipping (:func:`tadlab.pretrained.export`, ``entry`` its keyword arguments) into
    the job's :func:`model_folder`; the job returns the entry in its meta: ``{"meta": {"pretrained": [entry]}}``."""
    from tadlab.pretrained import export

    return export(model, model_folder(profile, study_name, job, seed), seed=seed, **entry)


def exported_models(profile: str) -> list[tuple[dict, Path]]:
    """Every ``(manifest entry, folder)`` the parts of ``profile`` exported, in plan order."""
    found = []
    for name, result in plan(profile):
        for job in result.jobs:
            for seed in result.seeds_at(profile):
                path = part_path(profile, name, job, seed)
                if path.is_file():
                    for entry in json.loads(path.read_text()).get("meta", {}).get("pretrained", []):
                        found.append((entry, model_folder(profile, name, job, seed)))
    return found


def shipped_dir(profile: str) -> Path:
    """Where :func:`tadlab.pretrained.ship` puts a profile's models: the package's own folder at "full"."""
    from tadlab.pretrained import HERE

    _check_profile(profile)
    return HERE if profile == "full" else work_dir() / f"pretrained-{profile}"


def plan(profile: str) -> list[tuple[str, Result]]:
    """Every ``(study, Result)`` of every study, in order; a results file belongs to one study only."""
    _check_profile(profile)
    entries, owners = [], {}
    for name in STUDIES:
        for result in study(name).RESULTS:
            if result.name in owners:
                raise ValueError(f"{result.name} is declared by studies {owners[result.name]!r} and {name!r}")
            owners[result.name] = name
            entries.append((name, result))
    for name, result in entries:
        missing = [need for need in result.needs if need not in owners]
        if missing:
            raise ValueError(f"{result.name} ({name}) needs {missing}, which no study makes")
    return entries


def stored_seconds(path) -> list[float]:
    """The seconds each job of a merged results file took (its ``"jobs"`` record, one value per job and seed): what
    rebuilding that file from scratch costs, in one core's time, on the machine that made it. Empty for a file with
    no such record (the external ones)."""
    jobs = json.loads(Path(path).read_text()).get("jobs")
    if not isinstance(jobs, dict):
        return []
    return [float(seed["seconds"]) for per_seed in jobs.values() for seed in per_seed.values()]


def find_result(study_name: str, job: str) -> Result:
    """The one results file of ``study_name`` that ``job`` belongs to."""
    owners = [r for r in study(study_name).RESULTS if job in r.jobs]
    if len(owners) != 1:
        jobs = sorted({j for r in study(study_name).RESULTS for j in r.jobs})
        raise ValueError(f"study {study_name!r} has no job {job!r}; its jobs are {jobs}" if not owners else
                         f"job {job!r} of {study_name!r} belongs to {[r.name for r in owners]}: one file only")
    return owners[0]


def run_job(study_name: str, job: str, seed: int, profile: str, device="cpu", output=None) -> Path:
    """Run one job for one seed and write its part file (``output``, by default :func:`part_path`)."""
    import torch

    result = find_result(study_name, job)
    if seed not in result.seeds_at(profile):
        raise ValueError(f"{result.name}: seed {seed} is not one of its seeds at {profile!r}: "
                         f"{list(result.seeds_at(profile))}")
    torch.set_num_threads(1)  # one job per core; the small models run fastest single-threaded
    started = time.perf_counter()
    rows = dict(study(study_name).run(job, seed, profile, device=device))
    meta = rows.pop("meta", {})
    if not rows or not all(isinstance(m, dict) for m in rows.values()):
        raise TypeError(f"{study_name}.run({job!r}, ...) must return {{row name: metrics dict}}, got {list(rows)}")
    seconds = time.perf_counter() - started
    part = {"study": study_name, "job": job, "seed": seed, "profile": profile, "subset": result.subset,
            "seconds": seconds, "meta": meta,
            "rows": {name: {"seconds": seconds, **metrics} for name, metrics in rows.items()}}
    path = Path(output) if output is not None else part_path(profile, study_name, job, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(part), indent=1) + "\n")
    return path


def merge(study_name: str, result_name: str, profile: str, output=None) -> Path:
    """Gather the parts of one results file into ``results_dir(profile) / NAME`` (or ``output``): rows in job order,
    each over the file's seeds; the parts' ``meta`` (per job and seed) is stored under ``"jobs"``."""
    result = next((r for r in study(study_name).RESULTS if r.name == result_name), None)
    if result is None:
        raise ValueError(f"study {study_name!r} makes no {result_name!r}; it makes "
                         f"{[r.name for r in study(study_name).RESULTS]}")
    seeds = result.seeds_at(profile)
    rows: dict[str, dict] = {}
    jobs_meta = {}
    for job in result.jobs:
        for seed in seeds:
            path = part_path(profile, study_name, job, seed)
            if not path.is_file():
                raise FileNotFoundError(f"{result_name}: the part of job {job!r}, seed {seed} is missing ({path}); "
                                        f"run it: python -m tadlab.studies run {study_name} {job} --seed {seed} "
                                        f"--profile {profile}")
            part = json.loads(path.read_text())
            if part.get("profile") != profile or part.get("seed") != seed or part.get("job") != job:
                raise ValueError(f"{path} holds job {part.get('job')!r}, seed {part.get('seed')!r}, profile "
                                 f"{part.get('profile')!r}, not {job!r}, {seed}, {profile!r}")
            jobs_meta.setdefault(job, {})[str(seed)] = {"seconds": part["seconds"], **part.get("meta", {})}
            for name, metrics in part["rows"].items():
                row = rows.setdefault(name, {"job": job, "metrics": {}})
                if row["job"] != job:
                    raise ValueError(f"{result_name}: row {name!r} comes from jobs {row['job']!r} and {job!r}")
                row["metrics"][seed] = metrics
    runs = []
    for name, row in rows.items():
        missing = [s for s in seeds if s not in row["metrics"]]
        if missing:
            raise ValueError(f"{result_name}: row {name!r} of job {row['job']!r} lacks seeds {missing}")
        runs.append(SeedRuns(name, list(seeds), [row["metrics"][s] for s in seeds], result.subset))
    path = Path(output) if output is not None else results_dir(profile) / result.name
    notebook = getattr(study(study_name), "NOTEBOOK", None)
    return save_runs(path, runs, overwrite=True, notebook=notebook, study=study_name, profile=profile,
                     **result.meta, jobs=jobs_meta)
