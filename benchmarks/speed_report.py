"""The report of speed_targets.py: per speed target and channel importance, robust accuracy over seeds, matched
MACs, the measured speedup with its interval, retention of the dense robustness, and the 2x / 90 % goal."""

from __future__ import annotations

import math
from typing import Any

from common import markdown_header
from pruning_stats import summarise

GOAL_SPEEDUP, GOAL_RETENTION = 2.0, 0.9  # a variant >= 2x faster keeping >= 90 % of the dense APGD-CE+T


def shared_targets(targets: dict[Any, dict[str, Any] | None]) -> dict[Any, Any]:
    """Target -> the earlier target (in order) that chose the same channel ratio, whose rows it shares."""
    first: dict[float, Any] = {}
    shared = {}
    for s, t in targets.items():
        ratio = (t or {}).get("ratio")
        if ratio is None:
            continue
        if ratio in first:
            shared[s] = first[ratio]
        first.setdefault(ratio, s)
    return shared


def _cells(res: dict[str, Any]) -> dict[tuple[float, str], list[dict[str, Any]]]:
    cells: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in res["rows"]:
        cells.setdefault((r["target"], r["importance"]), []).append(r)
    return cells


def summary(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (target, importance): metrics over seeds, speedups per batch size, retention, goal, and the
    paired APGD-CE+T difference to magnitude importance (same seeds)."""
    dense_apgd = (res.get("dense") or {}).get("apgd", math.nan)
    cells = _cells(res)
    out = []
    for (target, imp), rows in sorted(cells.items()):
        entry: dict[str, Any] = {"target": target, "importance": imp, "seeds": sorted(r["seed"] for r in rows),
                                 "ratio": rows[0]["ratio"]}
        for k in ("clean", "pgd20", "apgd", "macs_fraction", "params_fraction"):
            entry[k] = summarise([r[k] for r in rows])
        entry["speedup"] = {b: {**summarise([r["speed"][b]["speedup"] for r in rows]),
                                "lowest_bound": min((r["speed"][b]["low"] for r in rows
                                                     if r["speed"][b]["low"] is not None), default=None)}
                            for b in rows[0]["speed"]}
        entry["retention"] = entry["apgd"]["mean"] / dense_apgd if dense_apgd else math.nan
        entry["goal_met"] = _meets_goal([s["mean"] for s in entry["speedup"].values()], entry["retention"])
        entry["elsewhere"] = _elsewhere(res, target, rows, entry["retention"])
        base = {r["seed"]: r["apgd"] for r in cells.get((target, "magnitude"), [])}
        if imp != "magnitude" and base:
            entry["apgd_vs_magnitude"] = summarise([r["apgd"] - base[r["seed"]] for r in rows if r["seed"] in base])
        out.append(entry)
    return out


def _meets_goal(speedups: list[float], retention: float) -> bool:
    """The 2x / 90 % goal: every batch size's speedup and the retention of the dense APGD-CE+T at their marks."""
    return bool(all(v >= GOAL_SPEEDUP for v in speedups) and retention >= GOAL_RETENTION)


def _elsewhere(res: dict[str, Any], target: float, rows: list[dict[str, Any]], retention: float) -> list[dict]:
    """The other machines' timing of this entry's architecture, when every row has exactly the target's layer
    shapes (a row timed by itself is not known to), with the goal checked on each machine."""
    if not all(r.get("speed_source", "").startswith("target search") for r in rows):
        return []
    out = []
    for other in res.get("elsewhere", []):
        t = other["targets"].get(str(target))
        if t is not None:
            out.append({"cpu": _cpu(other["machine"]), "speedup": t["measured"],
                        "goal_met": _meets_goal([m["speedup"] for m in t["measured"].values()], retention)})
    return out


def _pct(s: dict[str, Any]) -> str:
    if not s or not s["n"]:
        return "-"
    return f"{100 * s['mean']:.1f}" + (f" ± {100 * s['std']:.1f}" if s["n"] > 1 else "")


def _speed(s: dict[str, Any]) -> str:
    low = s.get("lowest_bound")
    return f"{s['mean']:.2f}x" + (f" (≥ {low:.2f})" if low is not None else "")


def _speed_sources(res: dict[str, Any]) -> str:
    reused = sum(r.get("speed_source", "this row") != "this row" for r in res["rows"])
    if not reused:
        return ""
    return (f"; {reused} of {len(res['rows'])} rows have exactly the layer shapes of their target's searched model "
            "and carry that timing (taken with the machine otherwise idle; dense kernels' latency follows the shapes)")


def _timed_on(res: dict[str, Any]) -> list[str]:
    """Which CPUs the speedups were measured on: latency holds for that machine, not for the one that trained."""
    cpus = {}
    for t in res["targets"].values():
        if t is not None:
            cpus.setdefault(_cpu(t.get("machine")), []).append(f"{t['target']:g}x")
    for r in res["rows"]:
        if r.get("speed_source") == "this row":
            cpus.setdefault(_cpu(r.get("speed_machine")), []).append(r["key"])
    if not cpus:
        return []
    return ["", "Timed on: " + "; ".join(f"{cpu} ({', '.join(what)})" for cpu, what in cpus.items())
            + f". This report was written on {_cpu(res['machine'])}."]


def _cpu(machine: dict[str, Any] | None) -> str:
    return f"{machine['cpu_model']}, {machine['cpu_count']} cores" if machine else "a machine not recorded"


def _eval_layouts(res: dict[str, Any]) -> str:
    """Which evaluations attacked channels_last weights (`--eval-channels-last`), when any did."""
    done = [r for r in [*res["rows"], res.get("dense") or {}] if "apgd" in r and "same_rows_as" not in r]
    cl = sum(bool(r.get("eval_channels_last")) for r in done)
    return (f"; {cl} of the {len(done)} evaluations (dense and rows) attacked channels_last weights "
            "(`--eval-channels-last`: the same fp32 numbers up to float rounding)" if cl else "")


def _elsewhere_lines(res: dict[str, Any]) -> list[str]:
    """The same architectures timed on other CPUs (`--timed-elsewhere`), and the goal on each."""
    entries = [(e, o) for e in res["summary"] for o in e.get("elsewhere", [])]
    if not entries:
        return []
    lines = ["", "## Timed on other CPUs", "", "The same layer shapes timed by another machine's target search "
             "(`--timed-elsewhere`: " + ", ".join(f"`{o['source']}`" for o in res["elsewhere"]) + "); accuracy as "
             "above.", "", "| target | importance | CPU | retention | speedup per batch size | goal |", "|---|---|---|---|---|---|"]
    for e, o in entries:
        shown = "; ".join(f"b{b}: {m['speedup']:.2f}x" + (f" [{m['low']:.2f}, {m['high']:.2f}]" if m["low"] is not None
                                                          else "") for b, m in o["speedup"].items())
        lines.append(f"| {e['target']:g}x | {e['importance']} | {o['cpu']} | {e['retention']:.2f} | {shown} | "
                     + ("**met**" if o["goal_met"] else "not met") + " |")
    for cpu in dict.fromkeys(o["cpu"] for _, o in entries):
        met = [e for e, o in entries if o["cpu"] == cpu and o["goal_met"]]
        lines += ["", f"On {cpu}: the goal is " + ("**met** by " + ", ".join(
            f"{e['importance']} at the {e['target']:g}x target ({len(e['seeds'])} seed{'s' * (len(e['seeds']) > 1)}, "
            f"retention {e['retention']:.2f})" for e in met) if met else "**not met** by any row so far") + "."]
    return lines


def render_markdown(res: dict[str, Any]) -> str:
    """The Markdown page of a speed-target run."""
    st, d = res["settings"], res.get("dense") or {}
    lines = markdown_header("Robust channel pruning to a measured speed target", res)
    info = res["dense_info"]
    adapted = info.get("adapted")
    lines += ["", f"- dense: `{info.get('arch')}` from `{info.get('source')}`"
              + (f", adversarially adapted here: TRADES {adapted['epochs']} epochs (best {adapted['best_epoch']})"
                 if adapted else f" (its TRADES adaptation, {st['adapt_epochs']} epochs, has not run yet: the targets "
                 "were searched first, their timing depends on the layer shapes only)" if st.get("adapt_epochs")
                 else " (used as released)"),
              f"- data: {res['dataset']}, splits {res['splits']}; eps {res['eps']:.5f} (L-inf); {res['data_notes']}",
              f"- every row: `channels` at the target's ratio (matched MACs; option-A shortcuts "
              + ("kept: their coupled layers at full width" if st.get("keep_shortcuts") else
                 "rewritten as frozen selection convolutions, residual streams thinned") + "), "
              f"TRADES fine-tuning {st['epochs']} epochs "
              f"(lr {st['lr']}, batch {st['batch_size']}, {st['steps']} steps"
              + (", bf16 autocast and channels_last, as the adaptation; attacks in validation and evaluation in fp32"
                 if st.get("bf16") else "") + "), best epoch on validation PGD; "
              f"evaluation on the first {st['eval_n']} test images" + _eval_layouts(res),
              f"- speed: {st['runtime']}, batch sizes {st['batch_sizes']}, measured against the dense model in "
              "interleaved rounds; `≥` is the lowest 95 % lower bound over the seeds' models"
              + _speed_sources(res), ""]
    if d:
        lines += [f"Dense: clean {100 * d['clean']:.1f}, PGD-20 {100 * d['pgd20']:.1f}, "
                  f"APGD-CE+T {100 * d['apgd']:.1f} %.", ""]
    lines += ["## Targets", "", "| target | channel ratio | MACs | measured at the ratio |", "|---|---|---|---|"]
    shared = shared_targets(res["targets"])
    for key, t in res["targets"].items():
        s = f"{float(key):g}"
        if t is None:
            lines.append(f"| {s}x | not searched yet | | |")
        elif t.get("ratio") is None:
            lines.append(f"| {s}x | out of reach | | {t['error']} |")
        else:
            shown = "; ".join(f"b{b}: {m['speedup']:.2f}x"
                              + (f" [{m['low']:.2f}, {m['high']:.2f}]" if m.get("low") is not None else "")
                              for b, m in t["measured"].items())
            same = shared.get(key)
            lines.append(f"| {s}x | {t['ratio']:.3f} | {100 * t['macs_fraction']:.1f} % | {shown}"
                         + (f" (the architecture {float(same):g}x chose: its rows are shared)" if same else "") + " |")
    lines += _timed_on(res)
    lines += ["", "## Results (mean ± std over seeds, %)", "",
              "| target | importance | seeds | MACs | params | clean | PGD-20 | APGD-CE+T | retention | "
              + " | ".join(f"speedup b{b}" for b in st["batch_sizes"].split(",")) + " | APGD vs magnitude |",
              "|---" * (10 + len(st["batch_sizes"].split(","))) + "|"]
    for e in res["summary"]:
        diff = e.get("apgd_vs_magnitude")
        diff_text = (f"{100 * diff['mean']:+.1f}" + (f" (CI ±{100 * diff['ci95']:.1f})" if diff["n"] > 1 else "")
                     if diff else "")
        lines.append(f"| {e['target']:g}x | {e['importance']} | {len(e['seeds'])} | {_pct(e['macs_fraction'])} | "
                     f"{_pct(e['params_fraction'])} | {_pct(e['clean'])} | {_pct(e['pgd20'])} | {_pct(e['apgd'])} | "
                     f"{e['retention']:.2f} | " + " | ".join(_speed(s) for s in e["speedup"].values())
                     + f" | {diff_text} |")
    met = [e for e in res["summary"] if e["goal_met"]]
    lines += ["", "## Goal", "", f"A variant at >= {GOAL_SPEEDUP:g}x measured speedup (mean over seeds, every batch "
              f"size) keeping >= {GOAL_RETENTION:.0%} of the dense APGD-CE+T: "
              + ("**met** by " + ", ".join(f"{e['importance']} at {e['target']:g}x (retention {e['retention']:.2f})"
                                            for e in met) if met else "**not met** by any row so far.")]
    lines += _elsewhere_lines(res)
    out_of_reach = [f"{float(k):g}x" for k, t in res["targets"].items() if t is not None and t.get("ratio") is None]
    if out_of_reach:
        lines += ["", f"No rows at {', '.join(out_of_reach)}: out of reach (above)."]
    if res["missing"]:
        lines += ["", f"Rows not run yet ({len(res['missing'])}): " + ", ".join(res["missing"])
                  + ". Re-run the command (same --cache) to add them."]
    return "\n".join(lines) + "\n"
