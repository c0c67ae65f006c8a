"""nbval with a numeric tolerance for the cells whose outputs come from training on the running machine.

Strict nbval compares every stored output exactly. That is right for the facts a notebook prints (data, shapes,
hand checks, stored ``results/`` rows, the inference of a fixed model), but a number that a training run produced
on this CPU differs in its last digits on another CPU (other vector kernels, other rounding), so those cells are
tagged ``nbval-tolerance``. For them, each decimal number of the new output is compared with the number at the same
place in the stored output, ``|new - stored| <= abs + rel * |stored|``; everything else (the text around the
numbers, integers such as counts and seeds, the number of outputs) is still compared exactly, by nbval itself.

    tags: ["nbval-tolerance"]                                  the project's tolerance, TOLERANCE
    metadata: {"nbval-tolerance": {"abs": 0.05, "rel": 0.1}}   this cell's own (with the tag)
    metadata: {"nbval-tolerance": {"integers": 1}}             integers may also move, by at most 1 (a snippet
                                                               index read off a trained model's output)

How: for every tagged cell, nbval's ``compare_outputs`` first sees the new output with each number that is within
the tolerance replaced by the stored text of that number; a number beyond it stays as it was, so nbval's own
report shows exactly the numbers (and any text) that moved too far.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

TAG = "nbval-tolerance"
# A decimal number (what a training run prints: losses, mAPs, recalls), with an optional sign and exponent.
# Integers are numbers too, but they are compared exactly: counts, seeds and epochs are facts, not drift.
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|(?<![A-Za-z])[-+]?(?:nan|inf)\b")
TEXT_FIELDS = ("text",)  # a stream's text; plus every text/* entry of display_data and execute_result


@dataclass(frozen=True)
class Tolerance:
    abs: float
    rel: float
    integers: int = 0  # how far an integer may move; 0: integers are compared exactly

    def __post_init__(self):
        for name in ("abs", "rel", "integers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"nbval tolerance: {name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.integers, int):
            raise ValueError(f"nbval tolerance: integers must be an int >= 0, got {self.integers!r}")

    def accepts(self, new: float, stored: float) -> bool:
        if math.isnan(stored) or math.isnan(new):
            return math.isnan(stored) and math.isnan(new)
        if math.isinf(stored) or math.isinf(new):
            return new == stored
        return abs(new - stored) <= self.abs + self.rel * abs(stored)


# The project's tolerance for a training run's numbers at profile="ci": measured as the largest drift between
# PyTorch's scalar ("default"), AVX2 and AVX-512 kernels on the notebooks' cells (README, "Development").
TOLERANCE = Tolerance(abs=0.02, rel=0.1)


def is_decimal(token: str) -> bool:
    return not token.lstrip("+-").isdigit()


def align(new: str, stored: str, tolerance: Tolerance) -> str:
    """``new`` with every decimal number that is within ``tolerance`` of the stored one at the same place written
    as the stored text. When the text between the numbers differs, or the number of numbers, ``new`` is returned
    unchanged: then nothing is comparable number by number, and nbval reports the whole difference."""
    new_parts, stored_parts = NUMBER.split(new), NUMBER.split(stored)
    new_numbers, stored_numbers = NUMBER.findall(new), NUMBER.findall(stored)
    if new_parts != stored_parts or len(new_numbers) != len(stored_numbers):
        return new
    pieces = [new_parts[0]]
    for text, token, reference in zip(new_parts[1:], new_numbers, stored_numbers):
        if is_decimal(token) and is_decimal(reference):
            within = tolerance.accepts(float(token), float(reference))
        else:
            within = not is_decimal(token) and not is_decimal(reference) and \
                abs(int(token) - int(reference)) <= tolerance.integers
        pieces += [reference if within else token, text]
    return "".join(pieces)


def align_outputs(new_outputs: list, stored_outputs: list, tolerance: Tolerance) -> list:
    """The new outputs (nbformat dicts, streams already coalesced) with their text fields aligned to the stored
    outputs at the same position; outputs of another type or count are left as they are."""
    if len(new_outputs) != len(stored_outputs):
        return new_outputs
    aligned = []
    for new, stored in zip(new_outputs, stored_outputs):
        new = type(new)(new)  # a shallow copy: nbval keeps its own list of the new outputs
        if new.get("output_type") != stored.get("output_type"):
            aligned.append(new)
            continue
        for field in TEXT_FIELDS:
            if isinstance(new.get(field), str) and isinstance(stored.get(field), str):
                new[field] = align(new[field], stored[field], tolerance)
        if isinstance(new.get("data"), dict) and isinstance(stored.get("data"), dict):
            data = type(new["data"])(new["data"])
            for mime, value in data.items():
                if mime.startswith("text/") and isinstance(value, str) and isinstance(stored["data"].get(mime), str):
                    data[mime] = align(value, stored["data"][mime], tolerance)
            new["data"] = data
        aligned.append(new)
    return aligned


def cell_tolerance(metadata: dict) -> Tolerance | None:
    """The tolerance of a cell tagged ``nbval-tolerance`` (its metadata's own, else TOLERANCE); None untagged."""
    if TAG not in (metadata.get("tags") or []):
        return None
    own = metadata.get(TAG)
    if own is None:
        return TOLERANCE
    if not isinstance(own, dict) or set(own) - {"abs", "rel", "integers"}:
        raise ValueError(f"cell metadata {TAG!r} must be a dict with keys 'abs', 'rel' and/or 'integers', "
                         f"got {own!r}")
    return Tolerance(abs=own.get("abs", TOLERANCE.abs), rel=own.get("rel", TOLERANCE.rel),
                     integers=own.get("integers", 0))


def pytest_collection_modifyitems(items):
    """Give every nbval cell tagged ``nbval-tolerance`` a comparison that first aligns its numbers."""
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or not hasattr(item, "compare_outputs"):
            continue  # not a notebook cell of nbval's
        tolerance = cell_tolerance(cell.metadata)
        if tolerance is None:
            continue
        exact = item.compare_outputs

        def compare_outputs(test, ref, skip_compare=None, exact=exact, tolerance=tolerance):
            return exact(align_outputs(test, ref, tolerance), ref, skip_compare)

        item.compare_outputs = compare_outputs
