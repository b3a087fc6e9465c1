"""Notebook files as documents: the banner each copy opens with, the clean-up of executed
notebooks (papermill metadata, timings, machine paths) and the commit the goldens ran.

Two copies of every notebook exist. The committed one in ``notebooks/`` carries the smoke
profile's outputs (plumbing, checked by nbval) and opens with a banner saying so; the published
one in ``results/notebooks/`` carries the outputs of the ``cpu`` run behind
``results/summary.json`` and opens with a banner naming that run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from .. import config
from .summary import outputs_commit, wall_seconds

BANNER_TAG = "banner"
METADATA_KEY = "ddcs_mi"
PUBLISHED_FOLDER = "results/notebooks"


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def dumps(nb: Mapping[str, Any]) -> bytes:
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()


def smoke_banner(name: str) -> str:
    """The banner of a committed notebook: its outputs are the smoke profile's."""
    cfg = config.resolve("smoke")
    return (f"> **These outputs are a plumbing check, not results.** This copy ran under the "
            f"`smoke` profile (D = {cfg['private_per_class']} images per class; E, P and the GAN "
            f"on {cfg['eval_train_limit']:,} images; {cfg['gan_steps']} GAN steps, "
            f"{cfg['transfer_steps']} transfer steps, {cfg['attack_steps']}-step attacks) so "
            "that `make test` can re-run and check it in minutes: its numbers, verdicts and "
            "figures say nothing about the method. The same notebook executed under the `cpu` "
            f"profile, with the results the README reports, is "
            f"[`{PUBLISHED_FOLDER}/{name}.ipynb`](../{PUBLISHED_FOLDER}/{name}.ipynb).")


def run_banner(profile: str, run_name: str) -> str:
    """The banner of a notebook executed by the runner into a run folder."""
    return (f"> **Run `{run_name}`, profile `{profile}`.** This copy was executed by "
            "`run_all.py`; its outputs come from that run folder.")


def published_banner(summary: Mapping[str, Any], name: str) -> str:
    """The banner of a published notebook: the run its outputs come from and the commit and
    date of the execution that wrote them (``summary.json``'s record of the notebook)."""
    record = next(nb for nb in summary["notebooks"] if nb["name"] == name)
    later = record.get("reexecutions") or []
    executed = later[-1] if later else record
    commit = outputs_commit(record) or summary["git_commit"]
    when = (executed.get("started") or summary["finished"])[:10]
    again = (f"; first executed at commit `{(record.get('commit') or '?')[:7]}`, "
             f"re-executed {len(later)}× by a resume" if later else "")
    return (f"> **Published results.** These are the outputs of the `{summary['profile']}` run "
            f"`{summary['run']}`, the run `results/summary.json` comes from: this notebook was "
            f"executed at commit `{commit[:7]}` on {when}{again} (the whole run: "
            f"{wall_seconds(summary) / 60:.1f} minutes of notebooks). Re-run it with "
            "`make reproduce`; the copy in `notebooks/` holds the smoke profile's outputs.")


def set_banner(nb: dict, text: str) -> dict:
    """Put ``text`` in the notebook's first cell, a markdown cell tagged ``banner`` (replaced
    when present, inserted otherwise)."""
    cell = {"cell_type": "markdown", "id": BANNER_TAG, "metadata": {"tags": [BANNER_TAG]},
            "source": text.splitlines(keepends=True)}
    cells = nb["cells"]
    if cells and BANNER_TAG in cells[0].get("metadata", {}).get("tags", []):
        cells[0] = cell
    else:
        cells.insert(0, cell)
    return nb


def strip_execution_metadata(nb: dict) -> dict:
    """Remove papermill's metadata and per-cell timings, keeping every output."""
    nb["metadata"].pop("papermill", None)
    for cell in nb["cells"]:
        meta = cell.get("metadata", {})
        meta.pop("papermill", None)
        meta.pop("execution", None)
        if meta.get("tags") == []:
            meta.pop("tags")
    return nb


def strip_machine_paths(nb: dict, replacements: Mapping[str, str]) -> dict:
    """Replace each absolute folder of this machine (keys) by a repository-relative name
    (values) in every source and text output, longest first; images are left alone."""
    ordered = sorted(replacements.items(), key=lambda kv: -len(kv[0]))
    pattern = re.compile("|".join(re.escape(k) for k, _ in ordered)) if ordered else None
    lookup = dict(ordered)

    def fix(value: Any) -> Any:
        if pattern is None:
            return value
        if isinstance(value, str):
            return pattern.sub(lambda m: lookup[m.group(0)], value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    for cell in nb["cells"]:
        cell["source"] = fix(cell["source"])
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = fix(out["text"])
            for kind in ("text/plain", "text/html", "text/markdown"):
                if kind in out.get("data", {}):
                    out["data"][kind] = fix(out["data"][kind])
            if "traceback" in out:
                out["traceback"] = fix(out["traceback"])
    return nb


def record_golden_commit(nb: dict, commit: str) -> dict:
    """Record in the notebook's metadata the commit whose code produced its outputs."""
    nb["metadata"].setdefault(METADATA_KEY, {})["golden_commit"] = commit
    return nb


def golden_commit(nb: Mapping[str, Any]) -> str | None:
    return nb.get("metadata", {}).get(METADATA_KEY, {}).get("golden_commit")


def code_cells(nb: Mapping[str, Any]) -> list[str]:
    """The sources of the code cells, in order (what the goldens' commit check compares)."""
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
