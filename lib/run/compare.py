"""Did two runs give the same results? ``python -m lib.cli compare A B [--rtol R]``.

A and B are run folders (``runs/<folder>``, with ``summary.json`` and ``manifest.json``) or
``results/``-style folders (``summary.json`` and the committed study files). What is compared:

- the manifests' sha256, for every artefact both manifests register (executed notebooks and
  timing files excepted; JSON artefacts are compared by content, timings ignored);
- every number, string and claim of ``summary.json`` and of the committed study files both
  folders have (``STUDY_FILES``);
- the per-sample audit tables (``audit/*.csv``), cell by cell.

Provenance and timing are ignored (``IGNORED_KEYS``). Numbers match when
|a − b| ≤ rtol · max(|a|, |b|) (NaN matches NaN); strings and booleans must be equal; a key, row
or table present on one side only is a difference.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError

SUMMARY = "summary.json"
MANIFEST = "manifest.json"
STUDY_FILES = ("entropy_sweep.json", "ngd_damped_study.json", "regimes.json")
"""The committed study files (``results/``); a run folder has none of them at its top."""
IGNORED_KEYS = frozenset({"run", "git_commit", "git_dirty", "started", "finished", "seconds",
                          "date", "run_dir", "timings", "written", "error", "commit",
                          "reexecutions"})
"""Provenance and timing: never compared (``error`` is a failed notebook's traceback line;
its ``status`` is compared)."""
IGNORED_ARTEFACTS = ("notebooks/", "metrics/timings.json", "runner_state.json", "env.json")
"""Manifest entries that are provenance or timing, by path prefix."""


@dataclass(frozen=True)
class Difference:
    """One difference: where, and the two sides (``None`` = absent)."""
    what: str
    a: Any
    b: Any

    def __str__(self) -> str:
        return f"{self.what}: A={_show(self.a)} B={_show(self.b)}"


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "<absent>"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


_ABSENT = object()


def numbers_match(a: float, b: float, rtol: float) -> bool:
    """|a − b| ≤ rtol · max(|a|, |b|); NaN matches NaN, ±inf only itself."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _label(item: Any, index: int) -> str:
    """A list element's name in a path: its id or name when it has one, else its position."""
    if isinstance(item, dict):
        for key in ("id", "name"):
            if isinstance(item.get(key), str):
                return item[key]
        if isinstance(item.get("attack"), str) and isinstance(item.get("mode"), str):
            return f"{item['attack']}/{item['mode']}"
    return str(index)


def compare_values(a: Any, b: Any, rtol: float, where: str = "") -> Iterator[Difference]:
    """Every difference between two JSON values (dicts by key, lists by position)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key in IGNORED_KEYS:
                continue
            sub = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                yield Difference(sub, a.get(key, _ABSENT), b.get(key, _ABSENT))
            else:
                yield from compare_values(a[key], b[key], rtol, sub)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else _ABSENT
            y = b[i] if i < len(b) else _ABSENT
            sub = f"{where}[{_label(x if x is not _ABSENT else y, i)}]"
            if x is _ABSENT or y is _ABSENT:
                yield Difference(sub, x, y)
            else:
                yield from compare_values(x, y, rtol, sub)
    elif _is_number(a) and _is_number(b):
        if not numbers_match(float(a), float(b), rtol):
            yield Difference(where, a, b)
    elif a != b or type(a) is not type(b):
        yield Difference(where, a, b)


def _cell(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def compare_tables(path_a: Path, path_b: Path, rtol: float, where: str) -> Iterator[Difference]:
    """Two CSV tables cell by cell (numbers with ``rtol``); columns by name, rows by position."""
    with open(path_a, newline="") as fa, open(path_b, newline="") as fb:
        rows_a, rows_b = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    cols_a = list(rows_a[0]) if rows_a else []
    cols_b = list(rows_b[0]) if rows_b else []
    if cols_a != cols_b:
        yield Difference(f"{where} columns", cols_a, cols_b)
        return
    if len(rows_a) != len(rows_b):
        yield Difference(f"{where} rows", len(rows_a), len(rows_b))
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        for col in cols_a:
            for d in compare_values(_cell(ra[col]), _cell(rb[col]), rtol, f"{where}[{i}].{col}"):
                yield d


def folder_kind(folder: Path) -> str:
    """``run`` (a run folder), ``results`` (a published folder); anything else: InputError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give a run folder (runs/<folder>) or a "
                         "results folder (results/)")
    if not (folder / SUMMARY).is_file():
        raise InputError(f"{folder} has no {SUMMARY}: it is neither a finished run folder nor "
                         "a results folder (a run writes it at its end; make publish copies it)")
    return "run" if (folder / MANIFEST).is_file() else "results"


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON ({err})") from err


def _compare_manifests(a: Path, b: Path, rtol: float) -> Iterator[Difference]:
    ma, mb = _load_json(a / MANIFEST), _load_json(b / MANIFEST)
    for rel in sorted(set(ma) & set(mb)):
        if rel.startswith(IGNORED_ARTEFACTS) or ma[rel].get("sha256") == mb[rel].get("sha256"):
            continue
        if rel.endswith(".json") and (a / rel).is_file() and (b / rel).is_file():
            yield from compare_values(_load_json(a / rel), _load_json(b / rel), rtol, rel)
        elif not rel.startswith("audit/"):      # audit tables: compared cell by cell below
            yield Difference(f"{rel} sha256", ma[rel].get("sha256"), mb[rel].get("sha256"))


def compare_folders(a: Path, b: Path, rtol: float = 1e-6) -> list[Difference]:
    """Every difference between folders ``a`` and ``b`` (see the module's docstring)."""
    if rtol < 0 or math.isnan(rtol):
        raise InputError(f"--rtol must be ≥ 0, got {rtol}")
    a, b = Path(a), Path(b)
    kinds = folder_kind(a), folder_kind(b)
    diffs = list(compare_values(_load_json(a / SUMMARY), _load_json(b / SUMMARY), rtol, SUMMARY))
    for name in STUDY_FILES:
        if (a / name).is_file() and (b / name).is_file():
            diffs += compare_values(_load_json(a / name), _load_json(b / name), rtol, name)
    if kinds == ("run", "run"):
        diffs += _compare_manifests(a, b, rtol)
    tables_a = {p.name for p in (a / "audit").glob("*.csv")}
    tables_b = {p.name for p in (b / "audit").glob("*.csv")}
    for name in sorted(tables_a | tables_b):
        where = f"audit/{name}"
        if name not in tables_a or name not in tables_b:
            diffs.append(Difference(where, "present" if name in tables_a else _ABSENT,
                                    "present" if name in tables_b else _ABSENT))
        else:
            diffs += compare_tables(a / where, b / where, rtol, where)
    return diffs


def main(a: str, b: str, rtol: float, out=print) -> int:
    """Print each difference and the count; 0 when there is none, 1 otherwise."""
    diffs = compare_folders(Path(a), Path(b), rtol)
    for d in diffs:
        out(str(d))
    out(f"{len(diffs)} difference{'s' if len(diffs) != 1 else ''} between {a} (A) and {b} (B) "
        f"at rtol {rtol:g}")
    return 1 if diffs else 0
