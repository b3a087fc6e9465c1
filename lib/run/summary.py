"""The summary of a run: ``summary.json`` (its schema is defined, written and validated here
and nowhere else) and ``summary.md``, from the metrics the notebooks recorded.

The evaluation notebook records ``by_source`` (``by_source_record``): per source (an attack
``<attack>/<mode>`` or a control), its seeds and, per metric, one value per seed and the
feature space. ``attack_table`` turns it into the summary's ``attacks`` list; its
``detection_limit`` ({statistic: {leak kind: smallest dose or null}}) is copied to the top
level. A claim's ``passed`` is true, false, or null with a ``status`` saying why it was not
measured.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .. import artifacts
from ..errors import InputError
from ..metrics.stats import mean_ci
from ..paper import PAPER_SAYS
from .provenance import git_commit

SUMMARY_SCHEMA_VERSION = 3


def by_source_record(results: pd.DataFrame) -> dict:
    """{source: {"seeds": [...], "metrics": {metric: {"values": [one per seed], "space"}}}} of
    a long table of metrics (columns source, seed, metric, value, space)."""
    out = {}
    for source in dict.fromkeys(results.source):
        part = results[results.source == source].sort_values("seed", kind="stable")
        out[source] = {"seeds": sorted(part.seed.unique().tolist()),
                       "metrics": {m: {"values": [None if pd.isna(v) else float(v)
                                                  for v in rows["value"]],
                                       "space": rows["space"].iloc[0]}
                                   for m, rows in part.groupby("metric", sort=False)}}
    return out


def source_mean(by_source: Mapping[str, Any], source: str, metric: str) -> float:
    """The mean over seeds of a recorded metric (NaN when no seed has a value)."""
    values = [v for v in by_source[source]["metrics"][metric]["values"] if v is not None]
    return sum(values) / len(values) if values else float("nan")


def record_execution(previous: Mapping[str, Any] | None, execution: Mapping[str, Any],
                     fingerprint: str) -> dict:
    """A notebook's runner-state entry after one more ``execution`` ({commit, started,
    seconds, status, error}): its first complete execution (``first``: commit, started,
    seconds) is kept for good; every other execution, before or after it, is appended to
    ``reexecutions`` ({commit, started, seconds, status}). ``status`` and ``error`` are the
    latest execution's: they describe the outputs the run folder now holds."""
    previous = dict(previous or {})
    first = first_execution(previous)
    attempt = {k: execution[k] for k in ("commit", "started", "seconds")}
    later = list(previous.get("reexecutions", []))
    if first is None and execution["status"] == "ok":
        first = attempt
    else:
        later.append({**attempt, "status": execution["status"]})
    return {"status": execution["status"], "error": execution["error"],
            "fingerprint": fingerprint, "seconds": execution["seconds"], "first": first,
            "reexecutions": later}


def first_execution(entry: Mapping[str, Any]) -> dict | None:
    """A runner-state entry's first complete execution; an entry written before executions
    were recorded (no ``first`` key) that succeeded counts as one of unknown commit."""
    if "first" in entry:
        return entry["first"]
    if entry.get("status") == "ok":
        return {"commit": None, "started": None, "seconds": entry.get("seconds")}
    return None


def notebook_record(name: str, entry: Mapping[str, Any]) -> dict:
    """A notebook's line of ``summary.json``: status and error of its outputs, the commit,
    start and seconds of its first complete execution (of its latest attempt while none is
    complete) and every other execution."""
    first = first_execution(entry)
    later = list(entry.get("reexecutions", []))
    shown = first or (later[-1] if later else {"commit": None, "started": None,
                                               "seconds": entry.get("seconds")})
    return {"name": name, "status": entry["status"], "error": entry.get("error"),
            "commit": shown["commit"], "started": shown["started"], "seconds": shown["seconds"],
            "reexecutions": later}


def outputs_commit(record: Mapping[str, Any]) -> str | None:
    """The commit a notebook's current outputs were executed at: its latest execution's."""
    later = record.get("reexecutions") or []
    return later[-1]["commit"] if later else record.get("commit")


def newest_commit(records: list[Mapping[str, Any]]) -> str | None:
    """The commit of the newest execution among notebook records (None when none is known):
    the summary's ``git_commit``, the code the run's outputs stand at."""
    latest = [(r["reexecutions"][-1] if r.get("reexecutions") else r) for r in records]
    known = [(e["started"], e["commit"]) for e in latest if e.get("started") and e.get("commit")]
    return max(known)[1] if known else None


def wall_seconds(summary: Mapping[str, Any]) -> float:
    """The run's wall time: the sum of each notebook's first complete execution (re-executions
    by a resume are listed, not added)."""
    return float(sum(nb["seconds"] or 0.0 for nb in summary["notebooks"]))


def source_intervals(by_source: Mapping[str, Any], metric: str) -> list[dict]:
    """Per source with values of ``metric``: its values over seeds, their mean and 95% t
    interval (NaN for one seed) — the interval the claims' tables give."""
    rows = []
    for source, entry in by_source.items():
        values = [v for v in entry["metrics"].get(metric, {}).get("values", []) if v is not None]
        if values:
            mean, low, high = mean_ci(values)
            rows.append({"source": source, "values": values, "mean": mean, "low": low,
                         "high": high})
    return rows


def collect_metrics(run_dir: Path) -> tuple[list, dict]:
    """(claims as a list, other metrics by notebook) from ``<run>/metrics``."""
    folder = run_dir / "metrics"
    claims, metrics = [], {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            content = json.loads(path.read_text())
            if path.stem == "claims":
                claims = [content[k] for k in sorted(content)]
            else:
                metrics[path.stem] = content
    return claims, metrics


def metrics_so_far(run_dir: Path) -> dict:
    """What a run folder has recorded so far, shaped as ``summary.json``'s ``claims``,
    ``metrics`` and ``detection_limit`` (notebook 99 reads it before the summary exists)."""
    claims, metrics = collect_metrics(Path(run_dir))
    return {"claims": claims, "metrics": metrics,
            "detection_limit": metrics.get("06_evaluation", {}).get("detection_limit")}


SUMMARY_KEYS = {"schema_version", "run", "profile", "overrides", "seed", "git_commit",
                "started", "finished", "notebooks", "claims", "detection_limit", "attacks",
                "metrics"}
CLAIM_KEYS = {"id", "claim", "criterion", "measured", "passed", "status", "notebook", "profile",
              "feature_space", "details", "paper_says"}


def verdict(claim: Mapping[str, Any] | None) -> str:
    """"pass", "FAIL", "not run" (recorded with ``passed`` null and a status) or "missing"."""
    if claim is None:
        return "missing"
    return "not run" if claim["passed"] is None else ("pass" if claim["passed"] else "FAIL")
ATTACK_KEYS = {"attack", "mode", "seeds", "metrics"}
ATTACK_METRIC_KEYS = {"mean", "values", "space"}


def attack_table(metrics: Mapping[str, Any]) -> list[dict]:
    """Per attack × mode, every metric of notebook 06 (mean over seeds, per-seed values,
    feature space) and the seeds it covers; [] when notebook 06 has not run."""
    by_source = metrics.get("06_evaluation", {}).get("by_source", {})
    rows = []
    for source, entry in by_source.items():
        if "/" not in source:                       # the controls
            continue
        attack, mode = source.split("/", 1)
        table = {}
        for name, m in entry["metrics"].items():
            values = [v for v in m["values"] if v is not None]
            table[name] = {"mean": sum(values) / len(values) if values else None,
                           "values": m["values"], "space": m["space"]}
        rows.append({"attack": attack, "mode": mode, "seeds": entry["seeds"], "metrics": table})
    return rows


def validate_summary(summary: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming what is missing if ``summary`` does not follow the schema."""
    def need(keys, obj, where):
        missing = set(keys) - set(obj)
        if missing:
            raise InputError(f"summary.json: {where} lacks {sorted(missing)} (schema version "
                             f"{SUMMARY_SCHEMA_VERSION}, docs/outputs.md)")

    need(SUMMARY_KEYS, summary, "the top level")
    if summary["schema_version"] != SUMMARY_SCHEMA_VERSION:
        raise InputError(f"summary.json: schema version {summary['schema_version']}, expected "
                         f"{SUMMARY_SCHEMA_VERSION}")
    for c in summary["claims"]:
        need(CLAIM_KEYS, c, f"claim {c.get('id')}")
        if c["passed"] is None and not c["status"]:
            raise InputError(f"summary.json: claim {c['id']} was not measured but says not why "
                             "(its status is empty)")
    for statistic, kinds in (summary["detection_limit"] or {}).items():
        bad = {k: f for k, f in kinds.items() if f is not None and not 0 <= f <= 1}
        if bad:
            raise InputError(f"summary.json: detection limit of {statistic} is not a dose in "
                             f"[0, 1]: {bad}")
    for a in summary["attacks"]:
        need(ATTACK_KEYS, a, f"attack entry {a.get('attack')}/{a.get('mode')}")
        for name, m in a["metrics"].items():
            need(ATTACK_METRIC_KEYS, m, f"metric {name} of {a['attack']}/{a['mode']}")
    for nb in summary["notebooks"]:
        need({"name", "status", "seconds", "error"}, nb, f"notebook entry {nb.get('name')}")


def write_summary(run_dir: Path, profile: str, overrides: Mapping, seed: int,
                  state: dict, started: str) -> dict:
    """``summary.json`` (schema in README) and ``summary.md`` of a run folder."""
    claims, metrics = collect_metrics(run_dir)
    claims = [{"feature_space": "", "details": "", "status": "", "precondition": "", **c,
               "paper_says": PAPER_SAYS.get(c["id"], "")} for c in claims]
    records = [notebook_record(n, state[n]) for n in state]
    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "run": run_dir.name,
        "profile": profile,
        "overrides": dict(overrides),
        "seed": seed,
        "git_commit": newest_commit(records) or git_commit(short=False),
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notebooks": records,
        "claims": claims,
        "detection_limit": metrics.get("06_evaluation", {}).get("detection_limit"),
        "attacks": attack_table(metrics),
        "metrics": metrics,
    }
    validate_summary(summary)
    artifacts.atomic_write_json(run_dir / "summary.json", summary)
    lines = [f"# Run {run_dir.name}", "", f"profile `{profile}`, seed {seed}, overrides "
             f"`{json.dumps(dict(overrides))}`, commit `{summary['git_commit'][:10]}`", "",
             "| notebook | status | commit | seconds (first complete execution) | re-executed |",
             "| --- | --- | --- | --- | --- |"]
    for nb in summary["notebooks"]:
        secs = "" if nb["seconds"] is None else f"{nb['seconds']:.1f}"
        status = nb["status"] + (f" ({nb['error']})" if nb["error"] else "")
        again = "; ".join(f"{(e['commit'] or '?')[:7]}, {e['seconds']:.1f} s, {e['status']}"
                          for e in nb.get("reexecutions", []))
        lines.append(f"| {nb['name']} | {status} | {(nb.get('commit') or '?')[:7]} | {secs} "
                     f"| {again} |")
    lines += ["", f"Wall time {wall_seconds(summary):.0f} s: the sum of the first complete "
              "executions."]
    lines += ["", "## Claims", ""]
    if claims:
        lines += ["| id | claim | criterion | measured | result |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {c['id']} | {c['claim']} | {c['criterion']} | {c['measured']} | "
                  f"{verdict(c)}{' (' + c['status'] + ')' if c['status'] else ''} |"
                  for c in claims]
    else:
        lines.append("No claims recorded.")
    artifacts.atomic_write_bytes(run_dir / "summary.md", ("\n".join(lines) + "\n").encode())
    return summary


