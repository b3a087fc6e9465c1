"""The claims of PROTOCOL.md, each computed from measured numbers by a pure function.

C0 from the classifiers' test accuracies; C1, C1b and C2 from a long table of metrics:
``results`` has one row per (source, seed, metric) with columns ``source`` (for attacks
``<attack>/<mode>``), ``seed``, ``metric`` and ``value``, as ``lib.stages.evaluation``
builds it; C3 from rank comparisons. Each function returns the keyword arguments of
``Context.claim`` (claim, criterion, measured, passed, details) plus, for C1–C2, ``table``:
the per-mode numbers behind the verdict. The criteria are PROTOCOL.md's, fixed before any run.
"""
from __future__ import annotations

import math

import pandas as pd

from .config import MODES
from .errors import InputError
from .metrics.stats import combined_p_value, format_ci, paired_bootstrap_ci


def soundness_claim(target_acc: float, evaluator_acc: float, profile: str,
                    n_target_classes: int, n_eval_classes: int) -> dict:
    """C0: T ≥ 0.85 on the private-class test set and E ≥ 0.90 (smoke: both above chance)."""
    if profile == "smoke":
        t_min, e_min = 1.0 / n_target_classes, 1.0 / n_eval_classes
        criterion = f"smoke: T > {t_min:.2f} and E > {e_min:.2f} (above chance)"
        passed = target_acc > t_min and evaluator_acc > e_min
    else:
        criterion = "T ≥ 0.85 and E ≥ 0.90"
        passed = target_acc >= 0.85 and evaluator_acc >= 0.90
    return {"claim": "the models are sound", "criterion": criterion,
            "measured": f"T {target_acc:.2f}, E {evaluator_acc:.2f} ({n_eval_classes}-way strict)",
            "passed": bool(passed), "details": ""}


def _values(results: pd.DataFrame, source: str, metric: str) -> pd.Series:
    """Per-seed values of ``metric`` for ``source``, indexed by seed (sorted)."""
    rows = results[(results.source == source) & (results.metric == metric)]
    if rows.empty:
        raise InputError(f"no {metric!r} values for {source!r} in the results; evaluate that "
                         "attack run first (notebook 06)")
    return rows.set_index("seed")["value"].sort_index().astype(float)


def resilience_claim(results: pd.DataFrame, attack: str = "ppa", space: str = "d_P",
                     threshold: float = 0.5) -> dict:
    """C1: the fraction of D with DDCS 0 is ≥ ``threshold`` for the strongest mode (the mode
    with the highest mean DDCS_best under ``space``)."""
    table = pd.DataFrame([{"mode": m,
                           "ddcs_best": _values(results, f"{attack}/{m}", f"ddcs_best_{space}").mean(),
                           "resilient_fraction": format_ci(
                               _values(results, f"{attack}/{m}", f"resilient_fraction_{space}"), 3),
                           "resilient_mean": _values(results, f"{attack}/{m}",
                                                     f"resilient_fraction_{space}").mean()}
                          for m in MODES]).set_index("mode")
    strongest = table["ddcs_best"].idxmax()
    value = table.loc[strongest, "resilient_mean"]
    return {"claim": "many training samples stay resilient",
            "criterion": f"fraction of D with DDCS score 0 ≥ {threshold} for the strongest mode",
            "measured": f"{table.loc[strongest, 'resilient_fraction']} ({attack}, {strongest}, {space})",
            "passed": bool(value >= threshold),
            "details": "; ".join(f"{m}: {table.loc[m, 'resilient_fraction']}" for m in MODES)
                       + f" (strongest = highest mean DDCS_best under {space})",
            "table": table}


def membership_claim(results: pd.DataFrame, attack: str = "ppa", space: str = "d_P",
                     alpha: float = 0.05) -> dict:
    """C1b: DDCS(D) − DDCS(R) > 0 with p < ``alpha`` for at least one mode. Per mode: the mean
    gap over seeds and the seeds' permutation p-values combined by Fisher's method."""
    rows = []
    for m in MODES:
        gaps = _values(results, f"{attack}/{m}", f"gap_DR_{space}")
        p = combined_p_value(_values(results, f"{attack}/{m}", f"gap_p_{space}").tolist())
        rows.append({"mode": m, "gap": gaps.mean(), "gap_ci": format_ci(gaps, 3), "p": p,
                     "significant": bool(gaps.mean() > 0 and p < alpha)})
    table = pd.DataFrame(rows).set_index("mode")
    best = table["gap"].idxmax()
    return {"claim": "the attack leaks the samples themselves, not only the class",
            "criterion": f"DDCS(D) − DDCS(R) > 0 with p < {alpha} for at least one mode",
            "measured": f"largest gap {table.loc[best, 'gap_ci']}, p = {table.loc[best, 'p']:.3g} "
                        f"({attack}, {best}, {space})",
            "passed": bool(table["significant"].any()),
            "details": "; ".join(f"{m}: gap {table.loc[m, 'gap_ci']}, p {table.loc[m, 'p']:.3g}"
                                 for m in MODES)
                       + " (p: the seeds' permutation tests combined by Fisher's method)",
            "table": table}


IMPROVEMENT_METRICS = (("ddcs_best_d_P", 1, "DDCS_best (d_P)"), ("coverage", 1, "coverage (E)"),
                       ("fid_e", -1, "FID-E"))


def improvement_claim(results: pd.DataFrame, attack: str = "ppa",
                      treatment: str = "entropy+ngd", baseline: str = "vanilla",
                      seed: int = 0) -> dict:
    """C2: ``treatment`` − ``baseline`` paired over seeds, percentile-bootstrap 95% interval;
    passes when the interval excludes 0 in the right direction for DDCS_best (up), coverage
    (up) and FID-E (down). ``entropy`` − ``baseline`` is reported beside it."""
    rows = []
    for metric, sign, label in IMPROVEMENT_METRICS:
        base = _values(results, f"{attack}/{baseline}", metric)
        for mode in ("entropy", treatment):
            treat = _values(results, f"{attack}/{mode}", metric)
            common = base.index.intersection(treat.index)
            if base.loc[common].isna().any() or treat.loc[common].isna().any():
                mean, low, high = math.nan, math.nan, math.nan
            else:
                mean, low, high = paired_bootstrap_ci(treat.loc[common].to_numpy(),
                                                      base.loc[common].to_numpy(), seed=seed)
            right = (not math.isnan(low)) and sign * low > 0 and sign * high > 0
            rows.append({"metric": label, "mode": mode, "difference": mean, "low": low,
                         "high": high, "seeds": len(common), "right_direction": bool(right)})
    table = pd.DataFrame(rows)
    main = table[table["mode"] == treatment]

    def fmt(r):
        if math.isnan(r.difference):
            return f"{r.metric} not computed"
        if math.isnan(r.low):
            return f"{r.metric} {r.difference:+.3g} (one seed: no interval)"
        return f"{r.metric} {r.difference:+.3g} [{r.low:+.3g}, {r.high:+.3g}]"

    return {"claim": "entropy + natural gradient improves the attack",
            "criterion": f"{treatment} − {baseline}, paired over seeds, bootstrap 95% interval "
                         "excludes 0: DDCS_best up, coverage up, FID-E down",
            "measured": "; ".join(fmt(r) for r in main.itertuples()),
            "passed": bool(main["right_direction"].all()),
            "details": "entropy − vanilla: " + "; ".join(
                fmt(r) for r in table[table["mode"] == "entropy"].itertuples()),
            "table": table}


def susceptibility_claim(comparisons: pd.DataFrame, action: pd.DataFrame | None = None,
                         min_lift: float = 2.0, alpha: float = 0.05) -> dict:
    """C3: per-sample DDCS rankings agree across independent attack runs: Spearman ρ > 0
    with p < ``alpha`` and top-10% precision ≥ ``min_lift`` × chance, in every comparison of
    ``comparisons`` (rows of ``lib.defense.compare_rankings`` with a ``run`` column). The
    effect of acting on the flagged samples (``action``: rows with ``condition`` and
    ``ddcs_change``) is reported in the details."""
    if comparisons.empty:
        raise InputError("no independent runs to compare the audit with; C3 needs at least "
                         "one (another seed, mode or attack)")
    ok = ((comparisons.rho > 0) & (comparisons.rho_p < alpha)
          & (comparisons.precision >= min_lift * comparisons.chance))
    measured = "; ".join(f"{r.run}: ρ {r.rho:.2f} [{r.rho_low:.2f}, {r.rho_high:.2f}] (p {r.rho_p:.2g}), "
                         f"top-10% precision {r.precision:.2f} [{r.precision_low:.2f}, "
                         f"{r.precision_high:.2f}] vs chance {r.chance:.2f}"
                         for r in comparisons.itertuples())
    details = ""
    if action is not None and not action.empty:
        details = "acting on it: " + "; ".join(
            f"{r.condition}: remaining samples' mean DDCS_best {r.ddcs_change:+.3g}, "
            f"T test accuracy {r.test_acc_change:+.3f}" for r in action.itertuples())
    return {"claim": "DDCS finds susceptible samples without supervision",
            "criterion": f"Spearman ρ > 0 with p < {alpha} and top-10% precision ≥ {min_lift:g}× "
                         "chance between independent attack runs",
            "measured": measured, "passed": bool(ok.all()), "details": details}
