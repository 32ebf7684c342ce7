"""The GPU check's Markdown page (gpu_check.py): a status table of the parts, then one section per part."""

from __future__ import annotations

from typing import Any

from gpu_check_context import error_line
from gpu_check_parts import TRAIN_VARIANTS


def _n(v: Any, sig: int = 3) -> str:
    try:
        from exporters.bench_report import fmt_sig

        return fmt_sig(v, sig)
    except ImportError:
        return str(v)


def _ms(seconds: Any) -> str:
    return _n(seconds * 1e3) if isinstance(seconds, (int, float)) else "-"


def _why(part: dict | None, default: str | None = "not run") -> str | None:
    """Why a part or step has no result: its error, else the reason it was skipped, else `default`."""
    part = part or {}
    return part.get("error") or part.get("skipped") or default


def _section_tests(r: dict) -> list[str]:
    j = r.get("junit")
    if not j:
        return [f"no JUnit report (exit code {r.get('exit_code')})", "", "```", r.get("output_tail", "")[-1500:], "```"]
    c = j["counts"]
    lines = [f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped "
             f"(pytest exit code {r.get('exit_code')}; files: {', '.join(r.get('files', []))})", "",
             "| test | outcome | s | message |", "|---|---|---:|---|"]
    lines += [f"| `{t['test']}` | {t['outcome']} | {t['seconds']:.1f} | {t['message'].replace('|', '/')} |"
              for t in j["tests"]]
    return lines


def _section_train(r: dict) -> list[str]:
    s = r.get("settings", {})
    lines = [f"{s.get('model')} ({s.get('workload')}), {s.get('data')}; batch {s.get('batch')}, {s.get('warmup')} warm-up + "
             f"{s.get('steps')} timed steps per mode, modes interleaved; `torch.compile` backend "
             f"{s.get('compile_backend')} (compile time falls in the warm-up)", "",
             "| variant | mode | images/s | median ms/step | ratio to standard | speedup vs fp32 eager |",
             "|---|---|---:|---:|---:|---:|"]
    for name, *_ in TRAIN_VARIANTS:
        v = r.get(name)
        if not v or "modes" not in v:
            lines.append(f"| {name} | - | {_why(v)} | | | |")
            continue
        sp = r.get("speedup_vs_fp32_eager", {}).get(name, {})
        for m in v["modes"]:
            lines.append(f"| {name} | {m['mode']} | {_n(m['images_per_s'])} | {_ms(m['median_s_per_step'])} | "
                         f"{m['ratio_to_standard']:.2f} | {_n(sp.get(m['mode']))} |")
    return lines


def _section_attack(r: dict) -> list[str]:
    s = r.get("settings", {})
    lines = [f"PGD-20, eps {s.get('eps', 0):.4g}, step {s.get('alpha', 0):.4g}, random start, CE; batch {s.get('batch')}; "
             f"{s.get('timed_rounds')} interleaved rounds after {s.get('warmup_rounds')}", ""]
    p = r.get("pgd20_throughput", {})
    if "implementations" in p:
        lines += ["| implementation | images/s | median s | max L-inf |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {_n(v['images_per_s'])} | {_n(v['median_s'])} | {v['max_linf']:.4f} |"
                  for k, v in p["implementations"].items()]
        lines += ["", f"ours / reference speed: {p['speedup_ours_vs_reference']:.2f}x ({p['model']})"]
    else:
        lines.append(f"PGD throughput: {_why(p)}")
    m, st, aa = r.get("robust_model", {}), r.get("pgd20_strength", {}), r.get("autoattack", {})
    lines += ["", f"robust model: {m.get('training') or _why(m)}"]
    if "ours" in st:
        lines.append(f"- equal strength on {st['n']} held-out images: clean {st['clean']:.3f}, PGD-20 ours "
                     f"{st['ours']:.3f}, reference loop {st['reference loop']:.3f}")
    if "images_per_s" in aa:
        lines.append(f"- AutoAttack standard on {aa['n']} images: {_n(aa['images_per_s'])} images/s "
                     f"({aa['seconds_attack']:.1f} s; clean {aa['clean']:.3f}, robust {aa['robust_accuracy']:.3f})")
    else:
        lines.append(f"- AutoAttack: {_why(aa)}")
    return lines


def _section_deploy(r: dict) -> list[str]:
    s = r.get("settings", {})
    lines = [f"{s.get('arch')} on 3x32x32, {s.get('precision')}, {s.get('timing')}; channels-50 = half the channels "
             "removed by Torch-Pruning (`structural.build`)", ""]
    for key in ("dense", "channels-50"):
        m = r.get(f"model:{key}", {})
        if "params" in m:
            lines.append(f"- {key}: {m['params']:,} parameters, {m['macs']:,} MACs per image")
        a = r.get(f"aoti:{key}", {})
        if a:
            lines.append(f"- {key} AOTInductor: " + (f"compiled in {a['compile_seconds']:.0f} s, max |delta logit| "
                                                     f"{a['max_abs_diff']:.1e}" if "compile_seconds" in a else
                                                     str(a.get("skipped") or a.get("error"))))
    lines += ["", "| model | runtime | batch | p50 ms | p90 ms | p99 ms | images/s |", "|---|---|---:|---:|---:|---:|---:|"]
    for k, v in r.items():
        if k.startswith("latency:"):
            _, model, runtime, b = k.split(":")
            if "p50" in v:
                lines.append(f"| {model} | {runtime} | {b[1:]} | {_ms(v['p50'])} | {_ms(v['p90'])} | {_ms(v['p99'])} | "
                             f"{_n(v['throughput'])} |")
            else:
                lines.append(f"| {model} | {runtime} | {b[1:]} | {_why(v, None)} | | | |")
    ss = r.get("semi_structured", {})
    lines += ["", "2:4 semi-structured (`to_sparse_semi_structured`) vs dense, per layer (`F.linear`, CUDA events):", "",
              "| workload | layer | shape | precision | rows | dense ms | 2:4 ms | speedup | kernel / note |",
              "|---|---|---|---|---:|---:|---:|---:|---|"]
    for w, e in ss.get("workloads", {}).items():
        for row in e["runs"]:
            if "speedup" in row:
                lines.append(f"| {w} | {row['layer']} | {row['shape']} | {row['precision']} | {row['batch_size']} | "
                             f"{_ms(row['dense_p50'])} | {_ms(row['sparse_p50'])} | {row['speedup']:.2f} | "
                             f"{row.get('kernel', '')} |")
            else:
                lines.append(f"| {w} | {row.get('layer', '-')} | {row.get('shape', '-')} | {row.get('precision')} | "
                             f"{row.get('batch_size')} | | | | {row.get('unsupported') or row.get('error')} |")
    for key in ("error", "unsupported", "skipped"):
        if key in ss:
            lines.append(f"2:4: {ss[key]}")
    return lines


def _section_prune(r: dict) -> list[str]:
    if "skipped" in r and isinstance(r["skipped"], str):
        return [f"skipped: {r['skipped']}"]
    d, plan = r.get("data", {}), r.get("plan", {})
    lines = [f"data: {d.get('split')}; splits {d.get('splits')}",
             f"plan (from a timed pilot, {_n(plan.get('pilot_epoch_seconds'))} s/epoch): {plan.get('arch')}, dense "
             f"{plan.get('dense')}; each method {plan.get('epochs_prune')} prune + {plan.get('epochs_finetune')} "
             f"fine-tune epochs at sparsity {plan.get('sparsity')}; {plan.get('evaluation')}", "",
             "| model | objective | weight sparsity | clean | PGD-20 | train s |", "|---|---|---:|---:|---:|---:|"]
    for key in ("dense", "prune:magnitude", "prune:tscnc"):
        v = r.get(key)
        if not v:
            continue
        if "clean" in v:
            lines.append(f"| {key.removeprefix('prune:')} | {v.get('adv', 'pgd')} | {v.get('weight_sparsity', 0):.3f} | "
                         f"{v['clean']:.3f} | {v['pgd20']:.3f} | {v['train_seconds']:.0f} |")
        else:
            lines.append(f"| {key} | {_why(v, None)} | | | | |")
    return lines


SECTIONS = {"tests": ("1. CUDA tests of the suite", _section_tests),
            "train": ("2. Training throughput", _section_train),
            "attack": ("3. Attack throughput", _section_attack),
            "deploy": ("4. Deployment latency", _section_deploy),
            "prune": ("5. Robust pruning on CIFAR-10 (short)", _section_prune)}


def render_markdown(res: dict[str, Any]) -> str:
    """The results as a Markdown page."""
    m = res.get("machine", {})
    g = m.get("gpu", {})
    lines = [f"# GPU check ({res.get('device_kind')}, {res['date']}){' -- DRY RUN (CPU, tiny sizes)' if res['dry_run'] else ''}",
             "", f"- date (UTC): {res['started_utc']} to {res.get('finished_utc', '-')}, {res.get('seconds', 0):.0f} s",
             f"- command: `{res['command']}`",
             f"- machine: {m.get('cpu_model')}, {m.get('cpu_count')} cores"]
    if g:
        lines.append(f"- GPU: {g['name']} ({g['memory_gib']} GiB, capability {g['capability']}), driver {g['driver']}, "
                     f"CUDA {g['cuda_runtime']}, cuDNN {g['cudnn']}")
    if res.get("nvidia_smi"):
        lines.append(f"- nvidia-smi: {res['nvidia_smi']}")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in res.get("versions", {}).items()))
    if res.get("compressor_import_error"):
        lines.append(f"- **compressor not importable**: {res['compressor_import_error']}")
    lines.append("- budgets (s, hard caps per part): " + ", ".join(f"{k} {v:.0f}" for k, v in res["budgets_seconds"].items()))
    lines += ["", "| part | status | seconds | budget | note |", "|---|---|---:|---:|---|"]
    for name, rec in res["parts"].items():
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', 0):.0f} | {rec.get('budget_seconds', 0):.0f} | "
                     f"{(rec.get('error') or rec.get('reason') or '').replace('|', '/')[:200]} |")
    for name, rec in res["parts"].items():
        title, section = SECTIONS[name]
        lines += ["", f"## {title}", ""]
        if "result" not in rec:
            lines.append(f"{rec['status']}: {rec.get('error') or rec.get('reason') or 'no result'}")
            continue
        try:
            lines += section(rec["result"])
        except Exception as exc:  # a partial result must not stop the page
            lines.append(f"(could not render this part's partial result: {error_line(exc)}; see gpu_check.json)")
    return "\n".join(lines) + "\n"
