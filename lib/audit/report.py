"""What the audit writes: the per-member table, the summary, the figures and ``report.md``.

``save_outputs`` writes the four files into a fresh folder next to the output folder and
renames it into place only when all are written, so a failure leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..artifacts import atomic_path
from ..errors import InputError
from ..plotting import image_grid
from .arguments import check_out_folder
from .images import ImageSet, as_signed
from .scoring import Scores

COLUMNS = ["file", "class", "ddcs_best", "ddcs_avg", "n_assigned", "nearest_reconstruction",
           "nearest_distance"]
FILES = ("audit.csv", "summary.json", "most_exposed.png", "report.md")
SKIPPED_EXAMPLES = 10


def table(members: ImageSet, recons: ImageSet, scores: Scores) -> pd.DataFrame:
    """One row per member (index: its position in the members' set), most exposed first;
    ties by class, then file."""
    s = scores.members
    frame = pd.DataFrame({
        "file": members.files,
        "class": [members.classes[c] for c in members.labels],
        "ddcs_best": s.best, "ddcs_avg": s.avg, "n_assigned": s.n_assigned,
        "nearest_reconstruction": [recons.files[i] if i >= 0 else None for i in s.nearest],
        "nearest_distance": s.nearest_distance})
    return frame.sort_values(["ddcs_best", "class", "file"], ascending=[False, True, True],
                             kind="mergesort")[COLUMNS]


def _per_class(members: ImageSet, recons: ImageSet, nonmembers: ImageSet | None,
               scores: Scores) -> dict[str, dict[str, Any]]:
    out = {}
    n_rec = recons.counts()
    n_non = nonmembers.counts() if nonmembers is not None else None
    for c, name in enumerate(members.classes):
        rows = members.labels == c
        best = scores.members.best[rows]
        entry = {"n_members": int(rows.sum()), "n_reconstructions": int(n_rec[c]),
                 "ddcs_best": float(best.mean()), "ddcs_avg": float(scores.members.avg[rows].mean()),
                 "resilient_fraction": float(np.mean(best == 0))}
        if n_non is not None:
            entry["n_nonmembers"] = int(n_non[c])
            if n_non[c]:
                entry["nonmember_ddcs_best"] = float(
                    scores.nonmembers.best[nonmembers.labels == c].mean())
        out[name] = entry
    return out


def summary(members: ImageSet, recons: ImageSet, nonmembers: ImageSet | None, scores: Scores,
            distance_name: str, note: str, preprocessing: str) -> dict[str, Any]:
    """The dataset-level numbers (``summary.json``)."""
    s = scores.members
    sets = {"members": members, "reconstructions": recons}
    if nonmembers is not None:
        sets["nonmembers"] = nonmembers
    out: dict[str, Any] = {
        "ddcs_best": s.ddcs_best, "ddcs_avg": s.ddcs_avg,
        "resilient_fraction": s.resilient_fraction,
        "n_members": len(members), "n_reconstructions": len(recons),
        "distance": distance_name, "distance_note": note, "preprocessing": preprocessing,
        "image_mode": "grey" if members.mode == "L" else "RGB",
        "image_size": list(members.size),
        "classes": _per_class(members, recons, nonmembers, scores),
        "skipped": {role: {"count": len(x.skipped), "examples": x.skipped[:SKIPPED_EXAMPLES]}
                    for role, x in sets.items()},
        "unusable": [{"role": role, "path": u.path, "reason": u.reason}
                     for role, x in sets.items() for u in x.unusable],
        "alpha_dropped": {role: {"count": len(x.alpha_dropped),
                                 "examples": x.alpha_dropped[:SKIPPED_EXAMPLES]}
                          for role, x in sets.items() if x.alpha_dropped},
        "inputs": {role: (str(x.root) if x.root is not None else "tensors")
                   for role, x in sets.items()},
    }
    if nonmembers is not None:
        test = scores.membership
        out.update({
            "n_nonmembers": len(nonmembers),
            "nonmember_ddcs_best": scores.nonmembers.ddcs_best,
            "gap": test.gap, "p_value": test.p_value, "n_permutations": test.n_permutations,
            "membership_test": {
                "classes": [members.classes[c] for c in test.classes],
                "n_members": int(len(test.members)), "n_nonmembers": int(len(test.nonmembers)),
                "members_ddcs_best": test.members_best,
                "nonmembers_ddcs_best": test.nonmembers_best,
                "subsampled": test.subsampled, "seed": test.seed,
                "statistic": "DDCS_best(members) − DDCS_best(non-members); p one-sided, "
                             "membership reshuffled within members ∪ non-members per class"}})
    return out


# ------------------------------------------------------------------------------ figures
def gallery_figure(members: ImageSet, recons: ImageSet, frame: pd.DataFrame,
                   scores: Scores, k: int = 8) -> matplotlib.figure.Figure:
    """The ``k`` most exposed members (top row) above their nearest reconstructions."""
    top = [i for i in frame.index[:k] if scores.members.nearest[i] >= 0]
    if not top:
        raise InputError("no member has a reconstruction assigned; nothing to show")
    fig = image_grid([as_signed(members.images[top]),
                      as_signed(recons.images[scores.members.nearest[top]])],
                     ["member", "nearest\nreconstruction"],
                     title=f"The {len(top)} most exposed members (DDCS_best, distance)")
    for ax, i in zip(fig.axes[:len(top)], top):
        ax.set_title(f"{members.classes[members.labels[i]]}\n{scores.members.best[i]:.3g}",
                     fontsize=7)
    for ax, i in zip(fig.axes[len(fig.axes) // 2:], top):
        ax.set_xlabel(f"d = {scores.members.nearest_distance[i]:.3g}", fontsize=7)
    fig.tight_layout()
    return fig


def score_figure(scores: Scores) -> matplotlib.figure.Figure:
    """Distribution of the per-member DDCS_best (log scale; 0 = resilient, counted apart),
    with the non-members' beside it when given."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sets = [("members", scores.members)] + (
        [("non-members", scores.nonmembers)] if scores.nonmembers is not None else [])
    covered = np.concatenate([s.best[s.best > 0] for _, s in sets])
    bins = np.geomspace(covered.min(), covered.max() * 1.0001, 30) if covered.size else 10
    for name, s in sets:
        ax.hist(s.best[s.best > 0], bins=bins, alpha=0.6,
                label=f"{name} ({s.resilient_fraction:.0%} resilient: score 0)")
    ax.set_xscale("log")
    ax.set_xlabel("per-sample DDCS_best = 1 / distance to nearest assigned reconstruction")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title("Score distribution (samples with a reconstruction assigned)", fontsize=10)
    fig.tight_layout()
    return fig


def class_figure(summary_: dict[str, Any]) -> matplotlib.figure.Figure:
    """Per class: the resilient fraction and DDCS_best."""
    names = list(summary_["classes"])
    per = summary_["classes"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.35 * len(names) + 1.4))
    axes[0].barh(names, [per[n]["resilient_fraction"] for n in names])
    axes[0].set_xlim(0, 1)
    axes[0].set_xlabel("resilient fraction (no reconstruction assigned)")
    axes[1].barh(names, [per[n]["ddcs_best"] for n in names], label="members")
    if "nonmember_ddcs_best" in summary_:
        axes[1].barh(names, [per[n].get("nonmember_ddcs_best", np.nan) for n in names],
                     height=0.4, label="non-members")
        axes[1].legend(fontsize=8, loc="lower right")
    axes[1].set_xlabel("DDCS_best")
    axes[1].set_yticks([])
    for ax in axes:
        ax.invert_yaxis()
    fig.suptitle("Per class", fontsize=10)
    fig.tight_layout()
    return fig


def membership_figure(scores: Scores) -> matplotlib.figure.Figure:
    """The gap DDCS_best(members) − DDCS_best(non-members) against its permutation null."""
    test = scores.membership
    if test is None:
        raise InputError("no non-members were given: there is no membership comparison")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(test.null_gaps, bins=40, color="0.6", label="reshuffled membership (null)")
    ax.axvline(test.gap, color="C3", lw=2, label=f"observed gap {test.gap:.4g} "
                                                 f"(p = {test.p_value:.3g})")
    ax.set_xlabel("DDCS_best(members) − DDCS_best(non-members)")
    ax.set_ylabel("permutations")
    ax.legend(fontsize=8)
    ax.set_title("Members vs non-members", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ report.md
def _fmt(x: float) -> str:
    return f"{x:.6g}"


def cell(text: Any) -> str:
    """``text`` safe inside a Markdown table cell: control characters (a newline in a file
    name) shown as escapes, pipes and backticks escaped."""
    out = "".join(repr(ch)[1:-1] if unicodedata.category(ch).startswith("C") else ch
                  for ch in str(text))
    return out.replace("|", "\\|").replace("`", "\\`")


def report_markdown(summary_: dict[str, Any], frame: pd.DataFrame, k: int = 10) -> str:
    """``report.md``: the numbers, the figure, what the distance is and is not."""
    s = summary_
    lines = [
        "# DDCS audit",
        "",
        f"**Distance:** `{s['distance']}`. {s['distance_note']}",
        "",
        f"**Images:** {s['n_members']} members, {s['n_reconstructions']} reconstructions"
        + (f", {s['n_nonmembers']} non-members" if "n_nonmembers" in s else "")
        + f" in {len(s['classes'])} classes; converted to {s['preprocessing']}.",
    ]
    skipped = {role: v for role, v in s["skipped"].items() if v["count"]}
    if skipped:
        lines += ["", "**Skipped (not images):** " + "; ".join(
            f"{role}: {v['count']} ({', '.join(map(cell, v['examples']))}"
            f"{', …' if v['count'] > len(v['examples']) else ''})" for role, v in skipped.items())]
    if s.get("unusable"):
        lines += ["", f"**Left out (`--skip-unusable`): {len(s['unusable'])} entries** — "
                  + "; ".join(f"{u['role']}: {cell(u['path'])} ({u['reason']})"
                              for u in s["unusable"])]
    for role, v in s.get("alpha_dropped", {}).items():
        lines += ["", f"**Alpha dropped:** {v['count']} {role} image(s) had an alpha channel "
                  f"(transparency), which the audit ignores: "
                  f"{', '.join(map(cell, v['examples']))}{', …' if v['count'] > len(v['examples']) else ''}"]
    lines += [
        "",
        "## Scores",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| DDCS_best (mean over members of 1 / closest assigned distance) | {_fmt(s['ddcs_best'])} |",
        f"| DDCS_avg (mean over members of 1 / mean assigned distance) | {_fmt(s['ddcs_avg'])} |",
        f"| resilient fraction (members no reconstruction was assigned to) | "
        f"{_fmt(s['resilient_fraction'])} |",
    ]
    if "gap" in s:
        t = s["membership_test"]
        lines += [
            f"| DDCS_best of the non-members | {_fmt(s['nonmember_ddcs_best'])} |",
            f"| gap DDCS_best(members) − DDCS_best(non-members), tested sets | {_fmt(s['gap'])} |",
            f"| permutation p-value ({s['n_permutations']} permutations) | {_fmt(s['p_value'])} |",
            "",
            f"The test compares {t['n_members']} members with {t['n_nonmembers']} non-members "
            f"of the classes {', '.join(t['classes'])}"
            + (f" (equal numbers per class: a subsample drawn with seed {t['seed']})"
               if t["subsampled"] else "") + ". DDCS alone rewards realistic, diverse images "
            "of a class; only a positive gap with a small p-value says the reconstructions are "
            "closer to the training images than to other images of the same classes.",
        ]
    else:
        lines += ["", "No non-members were given: DDCS alone rewards realistic, diverse images "
                  "of a class, so these scores do not show that the training images themselves "
                  "leaked. Pass `--nonmembers` (images of the same classes the model did not "
                  "train on) for the membership test."]
    lines += ["", "| class | members | reconstructions | DDCS_best | resilient |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {cell(name)} | {v['n_members']} | {v['n_reconstructions']} | {_fmt(v['ddcs_best'])} "
              f"| {_fmt(v['resilient_fraction'])} |" for name, v in s["classes"].items()]
    lines += ["", "## The most exposed members", "",
              "![The most exposed members above their nearest reconstructions](most_exposed.png)",
              "", "| file | class | DDCS_best | nearest reconstruction | distance |",
              "| --- | --- | --- | --- | --- |"]
    for _, row in frame.head(k).iterrows():
        near = row["nearest_reconstruction"]
        lines.append(f"| {cell(row['file'])} | {cell(row['class'])} | {_fmt(row['ddcs_best'])} | "
                     f"{cell(near) if near is not None else ''} | "
                     f"{_fmt(row['nearest_distance']) if near is not None else ''} |")
    lines += ["", "`audit.csv` lists every member; `summary.json` holds these numbers.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ saving
def save_outputs(folder: str | Path, frame: pd.DataFrame, summary_: dict[str, Any],
                 gallery: matplotlib.figure.Figure) -> Path:
    """Write ``FILES`` into ``folder`` (new or empty): all of them, or nothing."""
    folder = check_out_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        with atomic_path(staging / "audit.csv") as tmp:
            frame.to_csv(tmp, index=False)
        with atomic_path(staging / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary_, indent=1, ensure_ascii=False) + "\n")
        with atomic_path(staging / "most_exposed.png") as tmp:
            gallery.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        with atomic_path(staging / "report.md") as tmp:
            tmp.write_text(report_markdown(summary_, frame))
        os.chmod(staging, 0o755)
        check_out_folder(folder)                      # still new or empty
        os.replace(staging, folder)                   # an empty folder is replaced too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
