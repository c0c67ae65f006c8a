"""environment.yml (conda) and pyproject.toml (pip) must list the same dependencies with the same lower bounds."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> PyPI name


def parse(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(>=\s*[0-9.]+)?\s*", requirement)
    assert match, f"cannot read requirement {requirement!r}"
    return match.group(1).lower(), (match.group(2) or "").replace(" ", "")


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return dict(parse(r) for r in requirements)


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # a `pip:` sub-list
            found.update(parse(r) for r in dep.get("pip", []))
            continue
        name, bound = parse(dep.replace("=", ">=", 1) if re.fullmatch(r"[\w\-]+=[0-9.]+", dep) else dep)
        if name not in {"python", "pip"}:
            found[CONDA_NAMES.get(name, name)] = bound
    return found


def test_environment_yml_agrees_with_pyproject():
    assert conda_requirements() == pip_requirements()


def test_cpu_setup_pins_torch():
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
