"""Markdown tables of a finished run's ``summary.json`` (and of the committed studies), for the
README and the docs: every number comes from the files, none is typed by hand.

    python -m lib.cli report [--summary results/summary.json]
"""
from __future__ import annotations

import json
import textwrap
from typing import Any, Mapping

import pandas as pd

from .. import paths
from ..config import ATTACKS, MODES
from ..paper import AUTHORS_COMMIT, CODE_DIFFERENCES, DEVIATIONS_BY_DATASET
from .summary import source_mean, verdict

ATTACK_COLUMNS = {"ddcs_best_d_P": "DDCS_best D (d_P)", "ddcs_best_R_d_P": "DDCS_best R (d_P)",
                  "gap_DR_d_P": "D − R (d_P)", "shift_d_P": "shift Δ (d_P)",
                  "resilient_fraction_d_P": "resilient (d_P)", "coverage": "coverage (E)",
                  "fid_e": "FID-E", "acc1_strict": "E Acc@1 strict",
                  "acc1_restricted": "E Acc@1 restricted", "knn_dist": "KNN dist (E)"}
CONTROLS = {"public_by_target": "public images labelled by T",
            "random_generator": "GAN prior, random codes",
            "real_test": "real test images, true labels"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index included), numbers to 3 digits."""
    head = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [_fmt(v) for v in row]) + " |")
    return "\n".join(lines)


def claims_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    rows = {c["id"]: {"claim": c["claim"], "measured here": c["measured"],
                      "criterion": c["criterion"],
                      "result": verdict(c) + (f" ({c['status']})" if c.get("status") else "")
                      + (f" [{c['precondition']}]" if c.get("precondition") else "")}
            for c in summary["claims"]}
    return pd.DataFrame(rows).T.rename_axis("id")


def attacks_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    by_source = summary["metrics"]["06_evaluation"]["by_source"]
    rows = {}
    for name in ATTACKS:
        for mode in MODES:
            source = f"{name}/{mode}"
            if source in by_source:
                metrics = by_source[source]["metrics"]
                rows[f"{name} / `{mode}`"] = {"seeds": len(by_source[source]["seeds"]), **{
                    label: source_mean(by_source, source, m) if m in metrics else None
                    for m, label in ATTACK_COLUMNS.items()}}
    return pd.DataFrame(rows).T.rename_axis("attack / mode")


def controls_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    by_source = summary["metrics"]["06_evaluation"]["by_source"]
    return pd.DataFrame({label: {name: source_mean(by_source, source, m)
                                 for m, name in ATTACK_COLUMNS.items()
                                 if m in by_source[source]["metrics"]}
                         for source, label in CONTROLS.items() if source in by_source}
                        ).rename_axis("metric (feature space)")


def transfer_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    metrics = summary["metrics"]["04_transfer"]
    monitor = pd.DataFrame(metrics["final_monitor"])
    view = pd.DataFrame(metrics["evaluator_view"])
    both = monitor.merge(view, on=["mode", "seed"])
    table = both.groupby("mode", sort=False)[["mean_entropy", "mean_confidence", "max_share",
                                              "E_private_share", "E_agrees_with_T",
                                              "fid_e_vs_public"]].mean()
    table["collapsed runs"] = both.groupby("mode", sort=False)["collapsed_ever"].sum()
    return table.rename(columns={"mean_entropy": "target mean entropy",
                                 "mean_confidence": "target confidence",
                                 "max_share": "largest class share",
                                 "E_private_share": "E: private share",
                                 "E_agrees_with_T": "E agrees with T",
                                 "fid_e_vs_public": "FID-E vs public"})


def stage_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    seconds = {nb["name"]: nb["seconds"] or 0.0 for nb in summary["notebooks"]}
    seconds["total"] = sum(seconds.values())
    return pd.DataFrame({"wall time": {k: f"{v:.0f} s ({v / 60:.1f} min)"
                                       for k, v in seconds.items()}}).rename_axis("notebook")


def report(summary: Mapping[str, Any]) -> str:
    """Every table, titled, as one markdown text."""
    parts = [("Claims", claims_table(summary)), ("Attacks (mean over seeds)", attacks_table(summary)),
             ("Controls (mean over seeds)", controls_table(summary)),
             ("Transfer (mean over seeds)", transfer_table(summary)),
             ("Wall time per notebook", stage_table(summary))]
    head = (f"Run `{summary['run']}`, commit `{summary['git_commit'][:10]}`, "
            f"finished {summary['finished']}.")
    return "\n\n".join([head] + [f"### {title}\n\n{markdown(t)}" for title, t in parts])


def headline(summary: Mapping[str, Any] | None = None) -> str:
    """The published run's findings in a few lines: each claim's verdict and measurement
    (read from ``results/summary.json`` when ``summary`` is None)."""
    if summary is None:
        path = paths.results_dir() / "summary.json"
        if not path.is_file():
            return "No published run yet (results/summary.json is missing): make reproduce, then make publish."
        summary = json.loads(path.read_text())
    lines = [f"Published `{summary['profile']}` run {summary['run']} (commit "
             f"{summary['git_commit'][:7]}, {summary['finished'][:10]}):"]
    for claim in summary["claims"]:
        lines += textwrap.wrap(f"{claim['id']:<4} {verdict(claim):<7} {claim['claim']}: "
                               f"{claim['measured']}", width=110, subsequent_indent=" " * 13)
    return "\n".join(lines)


def deviations_table(dataset: str = "fashion-mnist") -> str:
    """The deviations from the paper as docs/protocol.md shows them (``lib.paper``)."""
    rows = [f"| {paper} | {here} | {why} |" for paper, here, why in DEVIATIONS_BY_DATASET[dataset]]
    return "\n".join(["| the paper | here | why |", "| --- | --- | --- |", *rows])


def code_differences_table() -> str:
    """Where this repository's code differs from the authors' (``lib.paper.CODE_DIFFERENCES``),
    numbered and marked, as docs/protocol.md shows it."""
    rows = [f"| {i} | {theirs} | `{where}` | {ours} | {mark} |"
            for i, (theirs, where, ours, mark) in enumerate(CODE_DIFFERENCES, 1)]
    return "\n".join([f"| # | the authors' code ({AUTHORS_COMMIT}) | where | here | effect |",
                      "| --- | --- | --- | --- | --- |", *rows])
