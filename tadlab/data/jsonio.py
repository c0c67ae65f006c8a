"""The one reader of JSON files in tadlab: it names the file in every error.

* the file must exist and be UTF-8 (a leading byte-order mark is accepted); other bytes are reported with their
  offset, not as a bare ``UnicodeDecodeError``;
* an object that holds the same key twice is an error: ``json.load`` keeps the last value silently, which drops a
  video's ground truth or predictions when a video id appears twice;
* nesting deeper than Python's JSON parser can follow (about the recursion limit, 1,000 levels; an ActivityNet file
  nests 6) is an error naming the file, not a ``RecursionError``;
* NaN and Infinity literals are read as Python does; the schema rejects them where a time or score is expected.

The garbage collector is paused while a file is parsed (:func:`paused_gc`): building millions of small containers
otherwise triggers full collections that make a large results file several times slower to read.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from pathlib import Path


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; errors name ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist or is not a file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text: byte {exc.start} is {data[exc.start:exc.start + 1]!r}"
                         f" ({exc.reason}); save the file as UTF-8") from None


@contextlib.contextmanager
def paused_gc():
    """Pause the cyclic garbage collector: creating millions of small containers (parsing JSON, listing its rows)
    otherwise triggers full collections over everything alive, several times the work itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_json(text: str, where: str):
    """Parse JSON ``text`` with duplicate keys and excessive nesting reported as ``ValueError`` naming ``where``."""
    try:
        with paused_gc():
            return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ValueError(f"{where} holds the key {exc.args[0]!r} twice in one object; JSON readers keep only the "
                         f"last one, so the first would be lost silently: merge or rename them") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"{where} is nested too deeply for the JSON reader (more than about "
                         f"{sys.getrecursionlimit()} levels); an ActivityNet file nests 6") from None


def read_json(path, what: str = "JSON file"):
    """Read the JSON file ``path`` (see the module docstring for what is checked)."""
    return parse_json(read_text(path, what), f"{what} {str(Path(path))!r}")


def is_path(source) -> bool:
    return isinstance(source, (str, os.PathLike))
