"""The claims of docs/protocol.md, each computed from measured numbers by a pure function.

C0 from the classifiers' test accuracies; C1, C1b and C2 from a long table of metrics:
``results`` has one row per (source, seed, metric) with columns ``source`` (for attacks
``<attack>/<mode>``), ``seed``, ``metric`` and ``value``, as ``lib.stages.evaluation``
builds it; C3 from rank comparisons. Each function returns the keyword arguments of
``Context.claim`` (claim, criterion, measured, passed, details) plus, for C1–C2, ``table``:
the per-mode numbers behind the verdict. The criteria are docs/protocol.md's, fixed before any run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import pandas as pd

from .errors import InputError
from .metrics.stats import combined_p_value, holm, mean_ci, paired_bootstrap_ci, sign_flip_p


# ------------------------------------------------------------------------- wording rules
DETECTED, OPPOSITE, NOT_DETECTED = "detected", "opposite direction", "not detected"


@dataclass(frozen=True)
class Reading:
    """How a result may be stated (docs/protocol.md, "Wording"): ``kind`` is DETECTED,
    OPPOSITE or NOT_DETECTED; ``interval`` the estimate and its interval; ``note`` why a
    result against the claim's direction is not read as one (controls sharing its sign) and
    the detection limit, when given."""
    kind: str
    what: str
    interval: str
    note: str = ""
    controls_share_sign: bool = False

    @property
    def text(self) -> str:
        if self.kind == DETECTED:
            return f"{self.what} detected, {self.interval}"
        if self.kind == OPPOSITE:
            return f"{self.what} in the opposite direction, {self.interval}"
        return f"{self.what} not detected ({self.interval}" + (f"; {self.note}" if self.note else "") + ")"


def interval_text(estimate: float, low: float, high: float, digits: int = 3) -> str:
    """'+e [low, high]', or '+e (n = 1)' (one value: no interval)."""
    def f(x):
        return f"{x:+.{digits}g}"
    if math.isnan(estimate):
        return "not computed"
    if math.isnan(low) or math.isnan(high):
        return f"{f(estimate)} (n = 1)"
    return f"{f(estimate)} [{f(low)}, {f(high)}]"


def read_result(what: str, estimate: float, low: float, high: float, rejected: bool,
                expected_sign: int = 1, controls: Iterable[float] = (),
                limit: str = "") -> Reading:
    """The wording rules, applied in one place. ``rejected``: the registered test (with its
    Holm family) rejected in the expected direction → stated in that direction with its
    interval. Otherwise a result is stated as in the opposite direction only when its
    two-sided 95% interval [``low``, ``high``] excludes 0 on the other side *and* none of the
    ``controls`` (the same statistic on sets without the effect) shares its sign. Anything
    else is "not detected", with the interval and, when given, the detection ``limit``."""
    interval = interval_text(estimate, low, high)
    if rejected:
        return Reading(DETECTED, what, interval)
    excludes_0 = not (math.isnan(low) or math.isnan(high)) and (low > 0 or high < 0)
    opposite = excludes_0 and expected_sign * estimate < 0
    shared = [c for c in controls if not math.isnan(c) and c != 0
              and math.copysign(1, c) == math.copysign(1, estimate)]
    if opposite and not shared:
        return Reading(OPPOSITE, what, interval)
    why = [f"the controls share its sign ({', '.join(f'{c:+.3g}' for c in shared)})"] \
        if opposite and shared else []
    return Reading(NOT_DETECTED, what, interval, "; ".join(why + ([limit] if limit else [])),
                   controls_share_sign=bool(opposite and shared))


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


CONTROL_NAMES = {"real_test": "real same-class non-member images",
                 "public_by_target": "public images labelled by T",
                 "random_generator": "the prior's random samples"}


def attack_sources(results: pd.DataFrame) -> list[str]:
    """The ``<attack>/<mode>`` sources of a results table, in order."""
    return [s for s in dict.fromkeys(results.source) if "/" in s]


def difference_text(label: str, r) -> str:
    """'label +d [t low, high] (bootstrap [low, high])' of a ``paired_difference`` row."""
    if math.isnan(r.difference):
        return f"{label} not computed"
    if math.isnan(r.low):
        return f"{label} {r.difference:+.3g} (one seed: no interval)"
    return (f"{label} {r.difference:+.3g} [{r.low:+.3g}, {r.high:+.3g}] (bootstrap "
            f"[{r.boot_low:+.3g}, {r.boot_high:+.3g}])")


PRECONDITION_METRICS = (("ddcs_best_d_P", "DDCS_best (d_P)"), ("coverage", "coverage (E)"))
PRECONDITION_CONTROL = "random_generator"


def precondition_claim(results: pd.DataFrame, mode: str = "vanilla",
                       control: str = PRECONDITION_CONTROL, seed: int = 0) -> dict:
    """C0b (ours): each attack on ``mode`` reaches more of D than the prior's own random
    samples (``control``): attack − control, paired over seeds, for DDCS_best (d_P) and
    coverage (E); an attack passes when the two-sided 95% paired t interval of *both*
    differences lies above 0. The claim passes when every attack on ``mode`` does; the table
    has a row per attack × metric (``attack_passes`` repeats the attack's verdict)."""
    attacks = [s.split("/")[0] for s in attack_sources(results) if s.endswith(f"/{mode}")]
    if not attacks or control not in set(results.source):
        raise InputError(f"C0b needs attacks on {mode!r} and the {control!r} control in the "
                         "results; evaluate them first (notebook 06)")
    rows = []
    for attack in attacks:
        for metric, label in PRECONDITION_METRICS:
            d = paired_difference(_values(results, f"{attack}/{mode}", metric),
                                  _values(results, control, metric), seed=seed)
            rows.append({"attack": attack, "metric": label, **d,
                         "passes": bool(not math.isnan(d["low"]) and d["low"] > 0)})
    table = pd.DataFrame(rows)
    table["attack_passes"] = table.groupby("attack")["passes"].transform("all")
    by_attack = table.groupby("attack", sort=False)["passes"].all()
    one_seed = bool(table["seeds"].min() < 2)
    return {"claim": f"(precondition) the attack reaches more of D than the prior's own random "
                     f"samples (on `{mode}`)",
            "criterion": f"per attack on {mode}: attack − {CONTROL_NAMES[control]}, paired over "
                         "seeds, two-sided 95% paired t interval above 0 for both DDCS_best "
                         "(d_P) and coverage (E); every attack",
            "measured": "; ".join(
                f"{attack} {'pass' if ok else 'FAIL'}: " + ", ".join(
                    difference_text(r.metric, r) for r in table[table.attack == attack].itertuples())
                for attack, ok in by_attack.items()),
            "passed": None if one_seed else bool(by_attack.all()),
            "status": "not run: a paired interval needs at least 2 seeds" if one_seed else "",
            "details": "seeds per attack: " + ", ".join(
                f"{a} {int(table[table.attack == a].seeds.min())}" for a in by_attack.index),
            "table": table}


def c0b_by_attack(c0b_table: pd.DataFrame) -> dict[str, bool | None]:
    """Each attack's C0b verdict (``precondition_claim``'s table), for the record; None for an
    attack with fewer than 2 seeds (not run)."""
    groups = c0b_table.groupby("attack", sort=False)
    return {str(a): (None if int(g["seeds"].min()) < 2 else bool(g["attack_passes"].iloc[0]))
            for a, g in groups}


def precondition_text(by_attack: Mapping[str, bool | None] | None, source: str) -> str:
    """'ppa/vanilla; ppa C0b pass': the attack × mode a verdict rests on and its attack's C0b
    result (``source`` starts with '<attack>/'; an attack C0b did not test: not tested; one
    it could not test, with one seed: not run)."""
    attack = source.split("/")[0]
    by_attack = by_attack or {}
    result = ("not tested" if attack not in by_attack else "not run" if by_attack[attack] is None
              else "pass" if by_attack[attack] else "FAIL")
    return f"{source}; {attack} C0b {result}"


def precondition_of(c0b_table: pd.DataFrame | None, source: str) -> str:
    """``precondition_text`` from C0b's table."""
    return precondition_text(None if c0b_table is None else c0b_by_attack(c0b_table), source)


def c1_accuracy(split: str) -> str:
    """The E accuracy C1 reads: strict 10-way on the same-class split; on a shifted split,
    where E's public-class outputs answer another question, restricted to the private classes
    (the strict one printed beside)."""
    return "acc1_strict" if split == "same-class" else "acc1_restricted"


def per_seed_differences(results: pd.DataFrame,
                         comparisons: Iterable[tuple[str, str]],
                         metrics: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """The per-seed paired differences behind C0b and C2: a row per (treatment − baseline,
    metric, seed) with ``comparison``, ``metric`` (its label), ``seed``, ``difference`` and the
    comparison's paired t interval (``mean``, ``low``, ``high``). ``comparisons``: (treatment,
    baseline) sources; ``metrics``: (metric, label). Comparisons with a missing source are
    skipped."""
    rows = []
    have = set(results.source)
    for treatment, baseline in comparisons:
        if not {treatment, baseline} <= have:
            continue
        for metric, label in metrics:
            a, b = _values(results, treatment, metric), _values(results, baseline, metric)
            d = paired_difference(a, b)
            common = b.index.intersection(a.index)
            rows += [{"comparison": f"{treatment} − {baseline}", "metric": label, "seed": int(k),
                      "difference": float(a[k] - b[k]), "mean": d["difference"], "low": d["low"],
                      "high": d["high"]} for k in common]
    return pd.DataFrame(rows, columns=["comparison", "metric", "seed", "difference", "mean",
                                       "low", "high"])


def resilience_claim(results: pd.DataFrame, space: str = "d_P", threshold: float = 0.5,
                     accuracy: str = "acc1_strict") -> dict:
    """C1: for the strongest attack × mode (highest mean DDCS_best under ``space``), E Acc@1
    (``accuracy``: strict, or restricted on a shifted split, ``c1_accuracy``) ≥ ``threshold``
    and the fraction of D with DDCS 0 ≥ ``threshold`` and ≥ the real-image control's fraction.
    The same criterion is applied to each control and shown: a control that meets it says the
    criterion does not need an attack to be met."""
    attacks = attack_sources(results)
    strongest = max(attacks, key=lambda s: _values(results, s, f"ddcs_best_{space}").mean())
    sources = [strongest] + [c for c in CONTROL_NAMES if c in set(results.source)]
    real = (_values(results, "real_test", f"resilient_fraction_{space}").mean()
            if "real_test" in sources else math.nan)
    name = "strict" if accuracy == "acc1_strict" else "restricted"
    rows = []
    for source in sources:
        acc = _values(results, source, accuracy).mean()
        resilient = _values(results, source, f"resilient_fraction_{space}").mean()
        met = acc >= threshold and resilient >= threshold and not resilient < real
        row = {"source": source, "role": "attack" if source == strongest else "control",
               f"E_acc1_{name}": acc, "resilient_fraction": resilient, "criterion_met": bool(met)}
        if accuracy != "acc1_strict":
            row["E_acc1_strict"] = _values(results, source, "acc1_strict").mean()
        rows.append(row)
    table = pd.DataFrame(rows).set_index("source")
    top = table.loc[strongest]
    beside = (f" (strict {top.E_acc1_strict:.2f})" if accuracy != "acc1_strict" else "")
    return {"claim": "many training samples stay resilient even to the strongest attack, "
                     "although it succeeds at label level",
            "criterion": f"strongest attack × mode (highest mean DDCS_best under {space}): E {name} "
                         f"Acc@1 ≥ {threshold} and resilient fraction ≥ {threshold} and ≥ the "
                         "real-image control's",
            "measured": f"{strongest}: E {name} Acc@1 {top[f'E_acc1_{name}']:.2f}{beside}, "
                        f"resilient {top.resilient_fraction:.3f} (real images: {real:.3f})",
            "passed": bool(top.criterion_met),
            "details": "the criterion applied to the controls: " + "; ".join(
                f"{CONTROL_NAMES[s]}: Acc@1 {r[f'E_acc1_{name}']:.2f}, resilient "
                f"{r.resilient_fraction:.3f}, {'met' if r.criterion_met else 'not met'}"
                for s, r in table.iloc[1:].iterrows()),
            "table": table}


def _family(results: pd.DataFrame, value_metric: str, p_metric: str, alpha: float,
            beside_metric: str | None = None) -> pd.DataFrame:
    """Per attack × mode: the mean of ``value_metric`` over seeds (with its t-interval), the
    seeds' ``p_metric`` p-values combined by Fisher's method, Holm-adjusted over the attack ×
    mode family, and whether value > 0 with adjusted p < ``alpha``."""
    rows = []
    for source in attack_sources(results):
        values = _values(results, source, value_metric)
        mean, low, high = mean_ci(values)
        row = {"source": source, "seeds": len(values), "value": mean, "low": low, "high": high,
               "p": combined_p_value(_values(results, source, p_metric).tolist())}
        if beside_metric is not None:
            row["beside_p"] = combined_p_value(_values(results, source, beside_metric).tolist())
        rows.append(row)
    table = pd.DataFrame(rows).set_index("source")
    table["p_holm"] = holm(table["p"].to_numpy())
    table["significant"] = (table["value"] > 0) & (table["p_holm"] < alpha)
    return table


def _interval(r) -> str:
    return (f"{r.value:.3g} (one seed)" if math.isnan(r.low)
            else f"{r.value:.3g} [{r.low:.3g}, {r.high:.3g}]")


def membership_claim(results: pd.DataFrame, space: str = "d_P", alpha: float = 0.05) -> dict:
    """C1b: DDCS(D) − DDCS(R) > 0 with Holm-adjusted p < ``alpha`` (over every attack × mode
    tested) for at least one; reported for all. Per attack × mode: the mean gap over seeds
    and the seeds' permutation p-values combined by Fisher's method."""
    table = _family(results, f"gap_DR_{space}", f"gap_p_{space}", alpha)
    best = table["value"].idxmax()
    return {"claim": "the reconstructions are closer to the training samples than to non-members",
            "criterion": f"DDCS(D) − DDCS(R) > 0 with Holm-adjusted p < {alpha} (over all attack "
                         "× mode tested) for at least one",
            "measured": f"largest gap {_interval(table.loc[best])}, p = {table.loc[best, 'p']:.2g}"
                        f", Holm {table.loc[best, 'p_holm']:.2g} ({best}, {space})",
            "passed": bool(table["significant"].any()),
            "details": "; ".join(f"{s}: gap {_interval(r)}, p {r.p:.2g} (Holm {r.p_holm:.2g})"
                                 for s, r in table.iterrows())
                       + " (p: the seeds' permutation tests combined by Fisher's method)",
            "table": table}


def shift_claim(results: pd.DataFrame, space: str = "d_P", alpha: float = 0.05) -> dict:
    """C1c: the attack-induced shift toward members, mean Δ > 0 with Holm-adjusted p < ``alpha``
    (membership permutation, Fisher over seeds, Holm over every attack × mode) for at least
    one; the sign-flip p over reconstructions is reported beside it."""
    table = _family(results, f"shift_{space}", f"shift_p_{space}", alpha,
                    beside_metric=f"shift_flip_p_{space}")
    best = table["value"].idxmax()
    return {"claim": "the optimisation against T moves reconstructions toward the training "
                     "samples",
            "criterion": f"mean Δ > 0 with Holm-adjusted p < {alpha} (membership permutation, "
                         "over all attack × mode tested) for at least one",
            "measured": f"largest mean Δ {_interval(table.loc[best])}, p = "
                        f"{table.loc[best, 'p']:.2g}, Holm {table.loc[best, 'p_holm']:.2g} "
                        f"({best}, {space})",
            "passed": bool(table["significant"].any()),
            "details": "; ".join(f"{s}: Δ {_interval(r)}, p {r.p:.2g} (Holm {r.p_holm:.2g}; "
                                 f"sign flips {r.beside_p:.2g})" for s, r in table.iterrows())
                       + " (p: membership permutations, seeds combined by Fisher's method)",
            "table": table}


def detection_limit(doses: pd.DataFrame, alpha: float = 0.05) -> dict[str, dict[str, float | None]]:
    """The power of C1b's and C1c's tests: per statistic and leak kind, the smallest dose at
    which that claim's own criterion is met (mean over seeds > 0 and the seeds' p-values
    combined by Fisher's method < ``alpha``, unadjusted), or None. ``doses`` has one row per
    (statistic, kind, fraction, seed) with ``value`` and ``p``."""
    out: dict[str, dict[str, float | None]] = {}
    for (statistic, kind), part in doses.groupby(["statistic", "kind"], sort=False):
        found = None
        for fraction, rows in part.groupby("fraction", sort=True):
            if rows["value"].mean() > 0 and combined_p_value(rows["p"].tolist()) < alpha:
                found = float(fraction)
                break
        out.setdefault(statistic, {})[kind] = found
    return out


IMPROVEMENT_METRICS = (("ddcs_best_d_P", 1, "DDCS_best (d_P)"), ("coverage", 1, "coverage (E)"),
                       ("fid_e", -1, "FID-E"))


IMPROVEMENT_CLAIMS = {"entropy+ngd": "entropy + natural gradient improves the attack",
                      "entropy+ngd-damped": "(ours) the damped natural gradient (H_k + γI)⁻¹ g "
                                            "improves the attack"}


def improvement_criterion(treatment: str, baseline: str = "vanilla") -> str:
    return (f"{treatment} − {baseline}, paired over seeds, two-sided 95% paired t interval "
            "excludes 0: DDCS_best up, coverage up, FID-E down (percentile bootstrap beside)")


def paired_difference(treatment: pd.Series, baseline: pd.Series, seed: int = 0) -> dict:
    """``treatment − baseline`` over their common seeds: the mean, its two-sided 95% paired t
    interval (``low``, ``high``: the registered one) and the percentile bootstrap beside it
    (``boot_low``, ``boot_high``); NaN where a seed lacks a value or fewer than 2 pairs."""
    common = baseline.index.intersection(treatment.index)
    a, b = treatment.loc[common], baseline.loc[common]
    nan = {"difference": math.nan, "low": math.nan, "high": math.nan, "boot_low": math.nan,
           "boot_high": math.nan, "seeds": len(common)}
    if len(common) == 0 or a.isna().any() or b.isna().any():
        return nan
    diff = (a - b).to_numpy(dtype=float)
    mean, low, high = mean_ci(diff)
    _, boot_low, boot_high = paired_bootstrap_ci(a.to_numpy(), b.to_numpy(), seed=seed)
    return {**nan, "difference": mean, "low": low, "high": high, "boot_low": boot_low,
            "boot_high": boot_high}


def improvement_claim(results: pd.DataFrame, attack: str = "ppa",
                      treatment: str = "entropy+ngd", baseline: str = "vanilla",
                      beside: tuple[str, ...] = ("entropy",), seed: int = 0) -> dict:
    """C2 (``treatment`` ``entropy+ngd``) and C2d (``entropy+ngd-damped``): ``treatment`` −
    ``baseline`` paired over seeds, two-sided 95% paired t interval (the percentile bootstrap
    beside it, ``boot_low``/``boot_high``); passes when the t interval excludes 0 in the right
    direction for DDCS_best (up), coverage (up) and FID-E (down). The modes in ``beside`` are
    reported the same way beside it. In the table, ``direction`` is the sign of the mean
    difference (right or wrong), ``excludes_0`` whether the interval excludes 0, and
    ``passes`` both."""
    rows = []
    for metric, sign, label in IMPROVEMENT_METRICS:
        base = _values(results, f"{attack}/{baseline}", metric)
        for mode in (*beside, treatment):
            d = paired_difference(_values(results, f"{attack}/{mode}", metric), base, seed=seed)
            mean, low, high = d["difference"], d["low"], d["high"]
            excludes_0 = (not math.isnan(low)) and (low > 0 or high < 0)
            right = (not math.isnan(mean)) and sign * mean > 0
            rows.append({"metric": label, "mode": mode, **d,
                         "direction": "—" if math.isnan(mean) else ("right" if right else "wrong"),
                         "excludes_0": bool(excludes_0), "passes": bool(excludes_0 and right)})
    table = pd.DataFrame(rows)
    main = table[table["mode"] == treatment]

    def fmt(r):
        return difference_text(r.metric, r)

    return {"claim": IMPROVEMENT_CLAIMS.get(treatment, f"{treatment} improves the attack"),
            "criterion": improvement_criterion(treatment, baseline),
            "measured": "; ".join(fmt(r) for r in main.itertuples()),
            "passed": bool(main["passes"].all()),
            "details": "; ".join(f"{mode} − {baseline}: " + "; ".join(
                fmt(r) for r in table[table["mode"] == mode].itertuples()) for mode in beside),
            "table": table}


def recurrence_claim(comparisons: pd.DataFrame, min_lift: float = 2.0,
                     alpha: float = 0.05) -> dict:
    """C3a: per-sample DDCS rankings recur across independent attack runs: Spearman ρ > 0 with
    p < ``alpha`` and top-10% precision ≥ ``min_lift`` × chance, in every comparison of
    ``comparisons`` (rows of ``lib.defense.compare_rankings`` with a ``run`` column)."""
    if comparisons.empty:
        raise InputError("no independent runs to compare the audit with; C3a needs at least "
                         "one (another seed, mode or attack)")
    ok = ((comparisons.rho > 0) & (comparisons.rho_p < alpha)
          & (comparisons.precision >= min_lift * comparisons.chance))
    measured = "; ".join(f"{r.run}: ρ {r.rho:.2f} [{r.rho_low:.2f}, {r.rho_high:.2f}] "
                         f"(p {r.rho_p:.2g}), top-10% precision {r.precision:.2f} "
                         f"[{r.precision_low:.2f}, {r.precision_high:.2f}] vs chance {r.chance:.2f}"
                         for r in comparisons.itertuples())
    return {"claim": "the per-sample exposure ranking recurs across independent attack runs",
            "criterion": f"Spearman ρ > 0 with p < {alpha} and top-10% precision ≥ {min_lift:g}× "
                         "chance between independent attack runs",
            "measured": measured, "passed": bool(ok.all()), "details": ""}


def membership_exposure_claim(drops: pd.DataFrame, alpha: float = 0.05,
                              n_flips: int = 10000, seed: int = 0) -> dict:
    """C3b: the flagged samples' exposure comes from their membership. ``drops`` has one row per
    (retraining seed, flagged sample) with ``drop_without_flagged`` (its DDCS_best fall when T
    is retrained without the flagged set F) and ``drop_without_random`` (when T is retrained
    without an equal random set Q, F kept). Per retraining seed: the mean paired difference
    and a one-sided sign-flip p; combined over seeds by Fisher's method. Passes when the mean
    difference is > 0 in every retraining seed and the combined p < ``alpha``. The inference
    is conditional on these retrainings."""
    rows = []
    for retrain_seed, part in drops.groupby("retrain_seed", sort=True):
        diff = (part["drop_without_flagged"] - part["drop_without_random"]).to_numpy()
        mean, low, high = mean_ci(diff)
        rows.append({"retrain_seed": retrain_seed, "flagged": len(diff),
                     "mean_difference": mean, "low": low, "high": high,
                     "p": sign_flip_p(diff, n_flips, seed + int(retrain_seed))})
    table = pd.DataFrame(rows).set_index("retrain_seed")
    combined = combined_p_value(table["p"].tolist())
    return {"claim": "the flagged samples' exposure comes from their membership",
            "criterion": f"drop under T′ (F removed) − drop under T_Q (random Q removed), paired "
                         f"over F: mean > 0 in every retraining seed and Fisher-combined one-sided "
                         f"p < {alpha}",
            "measured": "; ".join(f"retraining seed {s}: "
                                  f"{interval_text(r.mean_difference, r.low, r.high)} "
                                  f"(p {r.p:.2g})" for s, r in table.iterrows())
                        + f"; combined p {combined:.2g}; power not measured",
            "passed": bool((table["mean_difference"] > 0).all() and combined < alpha),
            "details": "conditional on these retrainings (one T′ and one T_Q per retraining "
                       "seed, Q redrawn per seed); drops scored against the full D",
            "table": table}
