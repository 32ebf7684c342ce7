"""Statistics of a robust-pruning grid over seeds: mean, std and 95 % t-intervals per table cell, paired
differences between methods, retention of the dense model's robustness, and the lambda chosen on validation."""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

METRICS = ("clean", "pgd20", "apgd_ce", "apgd", "aa", "val_clean", "val_pgd20")


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (for a 95 % interval)."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, sample std and the 95 % t-interval half-width (nan below two values)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if not n:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci95": math.nan}
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci95": t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else math.nan}


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (group, label, sparsity): every metric summarised over the seeds."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["group"], r["label"], r["sparsity_target"]), []).append(r)
    out = []
    for (group, label, sparsity), rs in cells.items():
        first = rs[0]
        entry = {"group": group, "label": label, "method": first["method"], "sparsity_target": sparsity,
                 "seeds": sorted(r["seed"] for r in rs), "allocation": first["allocation"],
                 "schedule": first["schedule"], "adv": first["adv"], "weight_epochs": first["weight_epochs"],
                 "search_epochs": first["search_epochs"], "options": first["options"]}
        for k in (*METRICS, "sparsity", "singular_layers", "kappa_mean", "kappa_support_mean", "seconds"):
            entry[k] = summarise([r[k] for r in rs if k in r])
        out.append(entry)
    return out


def paired(rows: Sequence[dict[str, Any]], group: str, a: str, b: str, sparsity: float,
           metric: str) -> dict[str, Any] | None:
    """Mean difference a - b of `metric` over the seeds both ran (same seed = same data order), with its 95 % CI."""
    by = {(r["label"], r["seed"]): r[metric] for r in rows
          if r["group"] == group and r["sparsity_target"] == sparsity and metric in r}
    seeds = sorted({s for (lab, s) in by if lab == a} & {s for (lab, s) in by if lab == b})
    if not seeds:
        return None
    return {"a": a, "b": b, "metric": metric, "seeds": seeds,
            **summarise([by[(a, s)] - by[(b, s)] for s in seeds])}


def comparisons(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per matched group and sparsity: the best method by mean `metric` against every other one (paired)."""
    out = []
    for group in dict.fromkeys(r["group"] for r in rows if r["group"] in ("global", "layer")):
        for sparsity in sorted({r["sparsity_target"] for r in rows if r["group"] == group}):
            means = {e["label"]: e[metric]["mean"] for e in aggregate([r for r in rows if r["group"] == group
                                                                          and r["sparsity_target"] == sparsity])}
            means = {k: v for k, v in means.items() if math.isfinite(v)}
            if len(means) < 2:
                continue
            best = max(means, key=means.get)
            for other in sorted(means, key=means.get, reverse=True)[1:]:
                d = paired(rows, group, best, other, sparsity, metric)
                if d:
                    out.append({"group": group, "sparsity": sparsity, **d})
    return out


def lambda_rows(rows: Sequence[dict[str, Any]], matched: str) -> list[dict[str, Any]]:
    """The lambda ablation's rows, with the matched TSCNC rows (the default lambda) relabelled into it."""
    lam = [r for r in rows if r["group"] == "lambda"]
    sparsities = {r["sparsity_target"] for r in lam}
    default = [{**r, "group": "lambda", "label": f"tscnc lambda={r['config']['lam']:g}",
                "options": {**r["options"], "lam": r["config"]["lam"]}}
               for r in rows if r["group"] == matched and r["method"] == "tscnc" and r["adv"] == "trades"
               and r["sparsity_target"] in sparsities]
    return lam + default


def retention(summary: Sequence[dict[str, Any]], dense: dict[str, Any], metric: str = "apgd"
              ) -> list[dict[str, Any]]:
    """Per matched group and sparsity: the best method by mean `metric` and its ratio to the dense model's."""
    out = []
    cells = {(e["group"], e["sparsity_target"]) for e in summary if e["group"] in ("global", "layer")}
    for group, sparsity in sorted(cells):
        entries = [e for e in summary if (e["group"], e["sparsity_target"]) == (group, sparsity)
                   and math.isfinite(e[metric]["mean"])]
        if entries and dense.get(metric):
            best = max(entries, key=lambda e: e[metric]["mean"])
            out.append({"group": group, "sparsity": sparsity, "best": best["label"], "metric": metric,
                        "value": best[metric]["mean"], "dense": dense[metric],
                        "ratio": best[metric]["mean"] / dense[metric], "seeds": best["seeds"]})
    return out


def lcc_reading(row: dict[str, Any]) -> str:
    """Which reading of L_CC a TSCNC row used (rows made before the option existed: the layer-wise one)."""
    return row["config"].get("lcc", "layer")


def _lam(row: dict[str, Any]) -> float:
    return float(row["config"]["lam"])


def _vs_off(rows: Sequence[dict[str, Any]], off: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Held-out APGD-CE+T and PGD-20 of `rows` minus lambda 0's, paired by seed, with 95 % t-intervals."""
    pairs = [(r, off[r["seed"]]) for r in rows if r["seed"] in off]
    return {"seeds": sorted(r["seed"] for r, _ in pairs),
            **{m: summarise([a[m] - b[m] for a, b in pairs]) for m in ("apgd", "pgd20")}}


def lambda_choice(rows: Sequence[dict[str, Any]], matched: str) -> list[dict[str, Any]]:
    """Per L_CC reading and sparsity: the lambda with the best mean validation PGD-20 (never the held-out split)
    among that reading's lambdas and lambda 0 (no L_CC, a candidate of every reading), its held-out numbers, and
    its paired held-out difference from lambda 0 (same seeds, 95 % t-interval): whether the reading helps."""
    out = []
    lam_rows = lambda_rows(rows, matched)
    for sparsity in sorted({r["sparsity_target"] for r in lam_rows}):
        at = [r for r in lam_rows if r["sparsity_target"] == sparsity]
        off = {r["seed"]: r for r in at if _lam(r) == 0}
        for reading in sorted({lcc_reading(r) for r in at if _lam(r) != 0}):
            by_lam: dict[float, list[dict[str, Any]]] = {0.0: list(off.values())} if off else {}
            for r in at:
                if _lam(r) != 0 and lcc_reading(r) == reading:
                    by_lam.setdefault(_lam(r), []).append(r)
            val = {lam: summarise([r.get("val_pgd20") for r in rs])["mean"] for lam, rs in by_lam.items()}
            best = max((lam for lam in val if math.isfinite(val[lam])), key=val.get, default=None)
            if best is None:
                continue
            chosen = by_lam[best]
            candidates = [{"lambda": lam, "val_pgd20": val[lam], "seeds": len(by_lam[lam]),
                           **({"vs_off": _vs_off(by_lam[lam], off)} if lam != 0 and off else {})}
                          for lam in sorted(by_lam)]
            vs_off = next((c["vs_off"] for c in candidates if c["lambda"] == best and "vs_off" in c), None)
            out.append({"lcc": reading, "sparsity": sparsity, "lambda": best, "val_pgd20": val[best],
                        "pgd20": summarise([r["pgd20"] for r in chosen])["mean"],
                        "apgd": summarise([r["apgd"] for r in chosen])["mean"],
                        "seeds": sorted(r["seed"] for r in chosen), "candidates": candidates,
                        **({"vs_off": vs_off} if vs_off else {})})
    return out
