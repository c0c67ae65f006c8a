"""The trained models that ship with tadlab: the full-profile models behind the stored headline rows.

    from tadlab import pretrained
    pretrained.available()                             # [{"name": "gsmt", "preset": "anet", "seed": 0}, ...]
    model = pretrained.load("gsmt", preset="anet", seed=0)      # hash checked, weights_only, in eval mode
    pretrained.entry("gsmt", preset="anet", seed=0)             # config, world, recipe, commit, metrics, sha256

Each model is a state dict in this folder (``NAME_PRESET_seedK.pt``) with an entry in ``manifest.json``: how to
build the model (``factory``, a callable of ``tadlab`` and its JSON ``kwargs``), the world it was trained on
(``world``: preset, profile, seed and any override, as :func:`tadlab.experiments.standard_world` takes them), the
training ``recipe``, the ``commit`` of the code that trained it, its ``metrics`` (average mAP on the full testing
split, and ``check``: on the first :data:`CHECK_VIDEOS` testing videos, which ``tests/test_pretrained.py``
reproduces), the ``detect`` options of those metrics, and the file's ``sha256``.

They are made by the results workflow (``make results``): a study's job trains the model, :func:`export` writes its
state dict and entry beside the job's part file, and :func:`ship` gathers every exported model here. Nothing is
trained on import or load.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
CHECK_VIDEOS = 100  # the testing videos whose metrics a test reproduces (the full split takes minutes)
KEYS = ("name", "preset", "seed")


def _read_manifest() -> list[dict]:
    path = MANIFEST
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ValueError(f"{path} is not a tadlab pretrained manifest (expected {{'models': [...]}})")
    return data["models"]


def available() -> list[dict]:
    """What ships: one ``{"name", "preset", "seed"}`` per model, the keyword arguments of :func:`load`."""
    return [{key: model[key] for key in KEYS} for model in _read_manifest()]


def entry(name: str, preset: str, seed: int = 0) -> dict:
    """The manifest entry of one shipped model; a ValueError lists what ships when there is none."""
    found = [m for m in _read_manifest() if (m["name"], m["preset"], m["seed"]) == (name, preset, seed)]
    if not found:
        raise ValueError(f"no shipped model {name!r} for preset {preset!r}, seed {seed!r}; available: {available()}")
    return dict(found[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _factory(dotted: str):
    """``"tadlab.module:callable"`` -> the callable; only tadlab's own code is ever called."""
    module, _, attribute = dotted.partition(":")
    if not (module == "tadlab" or module.startswith("tadlab.")) or not attribute:
        raise ValueError(f"a model factory must be 'tadlab.<module>:<callable>', got {dotted!r}")
    target = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def build(model_entry: dict):
    """A fresh, untrained model of a manifest entry's ``factory`` and ``kwargs``."""
    return _factory(model_entry["factory"])(**model_entry["kwargs"])


def load(name: str, preset: str, seed: int = 0, device="cpu", **config):
    """The shipped model ``name`` trained on ``preset``'s full world of ``seed``, in eval mode on ``device``.

    ``config``: settings the caller relies on (e.g. ``num_stages=4``); each must equal the manifest's, else a
    ValueError names the differences. The file's sha256 must match the manifest's and its weights the model's keys
    and shapes (read with ``weights_only=True``); on any error nothing is returned and nothing changes.
    """
    import torch

    from tadlab.train import _check_weights
    from tadlab.utils import resolve_device

    model_entry = entry(name, preset, seed)
    differ = {key: (value, model_entry["kwargs"].get(key, "<not set>")) for key, value in config.items()
              if model_entry["kwargs"].get(key, "<not set>") != value}
    if differ:
        raise ValueError(f"shipped model {name!r} ({preset}, seed {seed}) has another config: "
                         + ", ".join(f"{key}={shipped!r} (asked {asked!r})" for key, (asked, shipped) in differ.items()))
    path = HERE / model_entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"the weights of shipped model {name!r} ({preset}, seed {seed}) are missing: {path}")
    digest = _sha256(path)
    if digest != model_entry["sha256"]:
        raise ValueError(f"{path} does not match its manifest entry (sha256 {digest[:12]}..., the manifest says "
                         f"{model_entry['sha256'][:12]}...): the file was changed or corrupted; restore it "
                         f"(git checkout) or rebuild it (make results)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a file with the right hash that torch cannot read: written by another torch?
        raise ValueError(f"{path} cannot be read as a state dict ({type(exc).__name__}: {exc})") from exc
    model = build(model_entry)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict")
    _check_weights(state, model.state_dict(), path)
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval()


def check_metrics(model, world, tiou_thresholds, device="cpu", **detect_kwargs) -> dict:
    """Average mAP of ``model`` on the first :data:`CHECK_VIDEOS` testing videos of ``world`` (what a test of the
    shipped model reproduces in seconds), with the ``detect`` options given."""
    from tadlab.eval import evaluate_detection
    from tadlab.train import detection_results

    items = list(world.dataset("testing"))[:CHECK_VIDEOS]
    scored, results = detection_results(model, items, world.ground_truth, world.class_names, device=device,
                                        **detect_kwargs)
    metrics = evaluate_detection(scored, results, tiou_thresholds=tiou_thresholds, subset=None)
    return {"videos": len(items), "average_mAP": float(metrics.average_mAP)}


def _commit() -> str:
    """The checkout's commit (with "+dirty" when files differ from it), or "unknown" outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "tadlab"],
                               cwd=HERE.parent.parent, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def export(model, folder, *, name: str, preset: str, seed: int, factory: str, kwargs: dict, world: dict,
           recipe: dict, metrics: dict, detect: dict | None = None) -> dict:
    """Write ``model``'s state dict to ``folder/NAME_PRESET_seedK.pt`` and return its manifest entry (the job stores
    it in its part's meta; :func:`ship` gathers it). ``factory`` and ``kwargs`` must rebuild ``model`` exactly
    (checked here); ``metrics`` are the testing metrics to ship, ``check`` among them (see the module docstring)."""
    import torch

    from tadlab.train import _check_weights

    for key, value in (("name", name), ("preset", preset)):
        if not isinstance(value, str) or not value.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{key} must be a plain word (letters, digits, _ and -), got {value!r}")
    if "check" not in metrics:
        raise ValueError("metrics must hold 'check': the metrics on the first CHECK_VIDEOS testing videos")
    file = f"{name}_{preset}_seed{seed}.pt"
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    _check_weights(state, build({"factory": factory, "kwargs": kwargs}).state_dict(), Path(file))  # rebuildable
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / file)
    return {"name": name, "preset": preset, "seed": int(seed), "file": file, "factory": factory,
            "kwargs": json.loads(json.dumps(kwargs)), "world": dict(world), "recipe": dict(recipe),
            "detect": dict(detect or {}), "metrics": dict(metrics), "commit": _commit(),
            "sha256": _sha256(folder / file), "bytes": (folder / file).stat().st_size}


def ship(entries: list[tuple[dict, Path]], target: Path = HERE, prune: bool = False) -> Path:
    """Copy every exported model (``(entry, folder it was exported to)``) into ``target`` and enter it in the
    manifest there, replacing an entry of the same (name, preset, seed) and keeping the others; with ``prune``,
    the models and files that ``entries`` do not hold are removed (the workflow's full rebuild)."""
    target = Path(target)
    keys = [(e["name"], e["preset"], e["seed"]) for e, _ in entries]
    if len(keys) != len(set(keys)):
        raise ValueError(f"two exported models share (name, preset, seed): {sorted(k for k in keys if keys.count(k) > 1)}")
    for model_entry, folder in entries:
        source = Path(folder) / model_entry["file"]
        if _sha256(source) != model_entry["sha256"]:
            raise ValueError(f"{source} changed after it was exported (sha256 differs from its entry)")
        shutil.copyfile(source, target / model_entry["file"])
    manifest = target / "manifest.json"
    kept = [] if prune or not manifest.is_file() else json.loads(manifest.read_text())["models"]
    models = [m for m in kept if (m["name"], m["preset"], m["seed"]) not in set(keys)] + [e for e, _ in entries]
    if prune:
        for stale in target.glob("*.pt"):
            if stale.name not in {m["file"] for m in models}:
                stale.unlink()
    models.sort(key=lambda m: (m["name"], m["preset"], m["seed"]))
    manifest.write_text(json.dumps({"models": models}, indent=1) + "\n")
    return manifest
