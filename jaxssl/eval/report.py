"""Evaluation report: a JSON-serialisable dict of results, written atomically."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Converts numpy / jax scalars and arrays, tuples and non-string keys to plain JSON types.

    Non-finite floats become None (JSON has no NaN); float keys (e.g. thresholds) become
    their ``repr`` strings.

    >>> to_jsonable({0.1: np.int32(3), "a": np.array([1.5, np.nan]), "t": (np.float32(2),)})
    {'0.1': 3, 'a': [1.5, None], 't': [2.0]}
    """
    if isinstance(obj, Mapping):
        return {k if isinstance(k, str) else repr(_scalar(k)): to_jsonable(v)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, np.generic):
        arr = np.asarray(obj)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    return _scalar(obj)


def _scalar(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, bool | int | float | str):
        return x
    raise ValueError(f"cannot put a value of type {type(x).__name__} in a JSON report: {x!r}")


def assemble_report(**sections: Any) -> dict[str, Any]:
    """One JSON-ready dict from named result sections; sections that are None are left out.

    >>> assemble_report(knn={"top1": np.float64(0.5)}, linear=None)
    {'knn': {'top1': 0.5}}
    """
    return {name: to_jsonable(value) for name, value in sections.items() if value is not None}


def write_report(report: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Writes ``report`` as indented JSON (via a temporary file, then rename); returns the path.

    >>> import tempfile
    >>> p = write_report({"top1": np.float32(0.25)}, tempfile.mkdtemp() + "/r/report.json")
    >>> open(p).read()
    '{\\n  "top1": 0.25\\n}\\n'
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    text = json.dumps(to_jsonable(report), indent=2, sort_keys=True, allow_nan=False) + "\n"
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path
