"""The robust-pruning report: Markdown tables of a grid's results and the per-layer kappa plots."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

from common import markdown_header
from pruning_overhead import GOAL
from pruning_stats import lcc_reading

from compressor.reporting import fmt
from pruners.plots import plot_kappa_epochs


def _f(v: Any, digits: int = 3) -> str:
    if isinstance(v, float) and math.isfinite(v) and abs(v) >= 1e4:
        return f"{v:.2e}"
    return fmt(v, digits) if not isinstance(v, float) or math.isfinite(v) else str(v)


def _ms(s: dict[str, Any], pct: bool = True) -> str:
    """mean ± std [± CI] of a summary, in percent."""
    if not s or not s["n"]:
        return "-"
    k = 100 if pct else 1
    text = f"{k * s['mean']:.1f}"
    if s["n"] > 1:
        text += f" ± {k * s['std']:.1f} (CI ±{k * s['ci95']:.1f})"
    return text


def _dense_text(res: dict[str, Any]) -> str:
    d, st = res["dense_train"], res["settings"]
    if d.get("source"):
        return f"`{d['arch'] or 'model'}` loaded from `{d['source']}` (pretrained, not trained here)"
    return f"cnn-small (width {st['width']}, hidden {st['hidden']}); dense: TRADES, {st['epochs_dense']} epochs"


GROUP_TITLES = {"global": "matched allocation: global (one threshold), one-shot where the method has a schedule",
                "layer": "matched allocation: per layer (every layer keeps the same fraction)",
                "own": "each method's own defaults (allocation and schedule as registered)",
                "lambda": "TSCNC lambda ablation (at the first matched allocation)",
                "variant": "variants (at the first matched allocation)"}


def _interval(d: dict[str, Any], sign: str = "") -> str | None:
    """The 95 % interval of a summary in points, e.g. "[-0.7, +0.9]" with sign "+"; None below two seeds."""
    lo, hi = d["mean"] - d["ci95"], d["mean"] + d["ci95"]
    return f"[{100 * lo:{sign}.1f}, {100 * hi:{sign}.1f}]" if math.isfinite(d["ci95"]) else None


def _paired_text(d: dict[str, Any]) -> str:
    """A paired difference in points, with its 95 % interval where there are two seeds or more."""
    ci = _interval(d, "+")
    return f"{100 * d['mean']:+.1f}" + (f" {ci}" if ci else "")


def render_markdown(res: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    st = res["settings"]
    aa = any("aa" in r for r in res["rows"]) or "aa" in res["dense"]
    lines = markdown_header(f"Robust pruning on {res['dataset']} (protocol v{st.get('protocol', 2)})", res)
    if res.get("note"):
        lines[1:1] = ["", f"> Note: {res['note']}"]
    d = res["dense"]
    lines += [
        f"- data: {res['data_notes']}; splits: fine-tune {res['splits']['train']}, validation {res['splits']['val']}, "
        f"held-out {res['splits']['test']} images",
        f"- model: {_dense_text(res)}; eps {res['eps']:.5g} (L-inf); training attack {st['steps']} steps; "
        f"batch {st['batch_size']}, lr {st['lr']} (HYDRA scores {st['lr_search']}), weight decay {st['weight_decay']}",
        f"- budget: every method trains its weights for {st['epochs_weights']} epochs (ADMM: {st['epochs_admm']} of "
        f"them in its ADMM phase); HYDRA also trains scores for {st['epochs_search']} epochs with frozen weights; "
        "objective TRADES (beta 6) for every row unless it says PGD-AT; checkpoint chosen on validation PGD-10",
        f"- evaluation: the same first {d['n']} held-out images for every row and attack: clean, PGD-20, APGD-CE; "
        "'APGD-CE+T' = per-image worst case of PGD-20, APGD-CE and APGD-T (9 targets, run on the survivors)"
        + ("; AA = AutoAttack standard on the same images, first seed only, where a value is shown" if aa else "")
        + f"; validation PGD-20 on {d.get('val_n')} validation images (used for choices, never the held-out split)",
        f"- seeds: {st['seeds']}; cells show mean ± std over seeds (CI ± = half-width of the 95 % t-interval); "
        f"one seed's held-out binomial standard error at 50 % is ±{50 / math.sqrt(max(d['n'], 1)):.1f} points",
        f"- dense: clean {100 * d['clean']:.1f}, PGD-20 {100 * d['pgd20']:.1f}, APGD-CE {100 * d['apgd_ce']:.1f}, "
        f"APGD-CE+T {100 * d['apgd']:.1f}" + (f", AA {100 * d['aa']:.1f}" if "aa" in d else "")
        + f"; validation PGD-20 {100 * d['val_pgd20']:.1f}", ""]
    entries = res["summary"]
    for group in dict.fromkeys(e["group"] for e in entries):
        lines += [f"## {GROUP_TITLES.get(group, group)}", "",
                  "| method | sparsity | allocation / schedule | objective | epochs (weights + search) | seeds | clean | "
                  "PGD-20 | APGD-CE | APGD-CE+T |" + (" AA |" if aa else "") + " val PGD-20 | singular layers | "
                  "kappa support mean | s / row |",
                  "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if aa else "") + "---|---|---|---|"]
        for e in sorted((e for e in entries if e["group"] == group), key=lambda e: (e["sparsity_target"], e["label"])):
            cells = [e["label"], f"{e['sparsity']['mean']:.4f}", f"{e['allocation']} / {e['schedule']}",
                     "PGD-AT" if e["adv"] == "pgd" else "TRADES", f"{e['weight_epochs']} + {e['search_epochs']}",
                     str(len(e["seeds"])), _ms(e["clean"]), _ms(e["pgd20"]), _ms(e["apgd_ce"]), _ms(e["apgd"])]
            if aa:
                cells.append(_ms(e["aa"]))
            cells += [_ms(e["val_pgd20"]), _f(e["singular_layers"]["mean"], 1), _f(e["kappa_support_mean"]["mean"], 1),
                      f"{e['seconds']['mean']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if res.get("comparisons"):
        lines += ["## Paired differences at matched allocation (APGD-CE+T, points; same seeds)", "",
                  "The best method by mean against each other one: mean difference over seeds ± std, and the 95 % "
                  "t-interval; an interval that contains 0 means no resolved difference.", "",
                  "| allocation | sparsity | best | vs | seeds | difference | 95 % CI |", "|---|---|---|---|---|---|---|"]
        for c in res["comparisons"]:
            ci = _interval(c) or "-"
            lines.append(f"| {c['group']} | {c['sparsity']:g} | {c['a']} | {c['b']} | {len(c['seeds'])} | "
                         f"{100 * c['mean']:+.1f}" + (f" ± {100 * c['std']:.1f}" if math.isfinite(c['std']) else "")
                         + f" | {ci} |")
        lines.append("")
    if res.get("retention"):
        lines += ["## Dense retention (best method's APGD-CE+T / dense)", "",
                  "| allocation | sparsity | best method | seeds | APGD-CE+T | dense | ratio |", "|---|---|---|---|---|---|---|"]
        for r in res["retention"]:
            lines.append(f"| {r['group']} | {r['sparsity']:g} | {r['best']} | {len(r['seeds'])} | "
                         f"{100 * r['value']:.1f} | {100 * r['dense']:.1f} | {r['ratio']:.3f} |")
        lines.append("")
    if res.get("lambda_choice"):
        lines += ["## lambda chosen on validation", "",
                  "Per reading of L_CC, the lambda with the best mean validation PGD-20 among that reading's lambdas "
                  "and lambda 0 (no L_CC); the last column gives each lambda's held-out APGD-CE+T minus lambda 0's, "
                  "paired by seed (95 % t-interval): whether the reading helps.", "",
                  "| L_CC reading | sparsity | validation PGD-20 per lambda (seeds) | chosen lambda | held-out PGD-20 | "
                  "held-out APGD-CE+T | APGD-CE+T vs lambda 0 per lambda (paired) |", "|---|---|---|---|---|---|---|"]
        choices = res["lambda_choice"]
        if isinstance(choices, dict):  # protocol v2 reports: {sparsity: choice}, layer-wise reading only
            choices = [{"lcc": "layer", "sparsity": float(k), **c} for k, c in choices.items()]
        for c in choices:
            cands = ", ".join(f"{k['lambda']:g}: {100 * k['val_pgd20']:.1f} ({k['seeds']})"
                              for k in c.get("candidates", []))
            diff = "; ".join(f"{k['lambda']:g}: {_paired_text(k['vs_off']['apgd'])} ({len(k['vs_off']['seeds'])} seeds)"
                             for k in c.get("candidates", []) if k.get("vs_off")) or "-"
            lines.append(f"| {c['lcc']} | {float(c['sparsity']):g} | {cands or '-'} | {c['lambda']:g} | "
                         f"{100 * c['pgd20']:.1f} | {100 * c['apgd']:.1f} | {diff} |")
        lines.append("")
    shrink = [r for r in res["rows"] if r.get("lcc_shrink")]
    if shrink:
        lines += ["## Cumulative shrink caused by L_CC", "",
                  "Per layer, the sum over steps of lr * lambda * ||grad L_CC|| / ||W|| (plain SGD; momentum can "
                  "multiply it by up to 10): how far the term alone pulled each layer's weights. Median and largest "
                  "over layers, first seed.", "", "| row | sparsity | L_CC reading | lambda | median shrink | "
                  "largest shrink (layer) |", "|---|---|---|---|---|---|"]
        for r in shrink:
            if r["seed"] != int(str(st["seeds"]).split(",")[0]):
                continue
            vals = sorted(r["lcc_shrink"].items(), key=lambda kv: kv[1])
            top = vals[-1]
            lines.append(f"| {r['label']} | {r['sparsity_target']:g} | {lcc_reading(r)} | {r['config']['lam']:g} | "
                         f"{vals[len(vals) // 2][1]:.2e} | {top[1]:.2e} ({top[0]}) |")
        lines.append("")
    if res.get("plots"):
        lines += ["## kappa per layer per epoch", "", "Seed " + str(st["seeds"].split(",")[0]) + ", first matched "
                  "allocation: " + ", ".join(f"[{Path(p).stem}]({Path(p).parent.name}/{Path(p).name})"
                                              for p in res["plots"]), ""]
    lines += ["## All rows", "", "| method | group | sparsity | seed | clean | PGD-20 | APGD-CE | APGD-CE+T | AA | "
              "val PGD-20 | kappa mean | singular | kappa support mean | train s | eval s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['label']} | {r['group']} | {r['sparsity']:.4f} | {r['seed']} | {_f(r['clean'])} | "
                     f"{_f(r['pgd20'])} | {_f(r['apgd_ce'])} | {_f(r['apgd'])} | {_f(r.get('aa'))} | "
                     f"{_f(r['val_pgd20'])} | {_f(r['kappa_mean'], 2)} | {r['singular_layers']} | "
                     f"{_f(r['kappa_support_mean'], 2)} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |")
    c = res["cost"]
    lines += ["", "## Cost", "", f"{c['rows_done']} of {c['rows_total']} rows done, {c['row_seconds'] / 60:.1f} min of "
              f"row time in all (training {c['train_seconds'] / 60:.1f} min, evaluation {c['eval_seconds'] / 60:.1f} "
              f"min); a row takes {c['row_seconds_mean']:.0f} s on average on this machine."]
    if c["missing"]:
        lines += [f"Not run yet ({len(c['missing'])} rows, about {c['missing_minutes']:.0f} min at that rate): "
                  + ", ".join(f"`{k}`" for k in c["missing"][:12]) + (" ..." if len(c["missing"]) > 12 else ""),
                  "Re-run the command above to run them: it resumes from the cache."]
    if res.get("overhead"):
        lines += ["", f"## Overhead (goal: an epoch at most {GOAL}x a plain adversarial-training epoch)", "",
                  "Median `Trainer.training_step` time of each phase, interleaved round-robin with a plain TRADES step "
                  "of the same model; the epoch ratio adds the condition-number tracking; 'with epoch-start work' adds "
                  "the phase's `on_epoch_begin` (TSCNC: the Taylor scoring).", "",
                  "| method | phase | adv | step ratio | epoch ratio | with epoch-start work | tracking s | epoch-start s |",
                  "|---|---|---|---|---|---|---|---|"]
        for o in res["overhead"]:
            lines.append(f"| {o['method']} | {o['phase']} | {o['adv']} | {o['step_ratio']:.3f} | "
                         f"{o['epoch_ratio']:.3f} | {o['epoch_ratio_with_update']:.3f} | {o['tracking_seconds']:.3f} | "
                         f"{o['epoch_begin_seconds']:.3f} |")
    return "\n".join(lines) + "\n"


def kappa_plots(rows: Sequence[dict[str, Any]], dense: dict[str, Any], folder: Path, group: str,
                seed: int) -> list[str]:
    """kappa of every layer against epoch, one PNG per method and sparsity (one seed, one matched group)."""
    before = {n: float(s["kappa"]) for n, s in dense["layers"].items()}  # JSON holds inf as a string
    paths = []
    for r in rows:
        if r["group"] != group or r["seed"] != seed:
            continue
        history = [{"phase": h.get("phase"), "layers": {n: {"kappa": float(k)} for n, k in h["kappa_layers"].items()}}
                   for h in r["history"] if h.get("kappa_layers")]
        name = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{r['label']}-{r['sparsity_target']:g}")
        title = f"{r['label']} at {r['sparsity']:.1%} ({group} allocation, {r['adv']}, seed {seed})"
        paths.append(str(plot_kappa_epochs(folder / f"{name}.png", history, before, title)))
    return paths
