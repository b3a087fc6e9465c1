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
    claims = [{"feature_space": "", "details": "", "status": "", **c,
               "paper_says": PAPER_SAYS.get(c["id"], "")} for c in claims]
    summary = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "run": run_dir.name,
        "profile": profile,
        "overrides": dict(overrides),
        "seed": seed,
        "git_commit": git_commit(short=False),
        "started": started,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "notebooks": [{"name": n, "status": state[n]["status"],
                       "seconds": state[n].get("seconds"), "error": state[n].get("error")}
                      for n in state],
        "claims": claims,
        "detection_limit": metrics.get("06_evaluation", {}).get("detection_limit"),
        "attacks": attack_table(metrics),
        "metrics": metrics,
    }
    validate_summary(summary)
    artifacts.atomic_write_json(run_dir / "summary.json", summary)
    lines = [f"# Run {run_dir.name}", "", f"profile `{profile}`, seed {seed}, overrides "
             f"`{json.dumps(dict(overrides))}`, commit `{summary['git_commit'][:10]}`", "",
             "| notebook | status | seconds |", "| --- | --- | --- |"]
    for nb in summary["notebooks"]:
        secs = "" if nb["seconds"] is None else f"{nb['seconds']:.1f}"
        status = nb["status"] + (f" ({nb['error']})" if nb["error"] else "")
        lines.append(f"| {nb['name']} | {status} | {secs} |")
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


