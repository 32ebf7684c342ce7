#!/usr/bin/env python
"""Deployment suite: one robust dense model through every compression, exported to ONNX and benchmarked.

The suite (`SUITE`) is the one definition: magnitude / HYDRA / TSCNC at 90, 95 and 99 % sparsity,
separable-linear FC layers, 50 % of the channels removed, and 2:4 magnitude pruning, each run by
`pruners.prune` from the same dense checkpoint with the same epoch budget. Every variant is exported
with `exporters.onnx.export_onnx` (parity checked) and `exporters.bench.run_bench` measures it in
PyTorch eager and in ONNX Runtime (one session at a time, pinned threads): latency p50/p90/p99 over
a batch-size sweep, file size, clean accuracy, white-box attacks on the source model transferred to
the engine, and a Square attack run directly against the engine.

Usage (from the repository root)::

    python benchmarks/deploy.py                     # cnn-small trained with TRADES on digits, CPU
    python benchmarks/deploy.py --dense r18.pt --dataset cifar10 --data-root ~/data --device cuda

Writes ``<out>/deploy-<device>-<dataset>-<YYYY-MM-DD>/bench.{json,csv,md,png}`` plus ``suite.json``
(the compression reports); an existing folder's files are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/ is no package: its shared helpers
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_header, run_main  # noqa: E402  (puts an uninstalled checkout on the path too)

from compressor.checkpoint import library_versions  # noqa: E402
from compressor.environment import device_kind, load_average, machine_info, pinned_threads  # noqa: E402
from compressor.errors import CompressorError  # noqa: E402
from compressor.io import atomic_write_text, check_output  # noqa: E402
from compressor.reporting import to_json  # noqa: E402
from compressor.training import TrainConfig  # noqa: E402
from compressor.workflows import open_model, train  # noqa: E402

# (variant name, pruner, pruner options, transforms): the compressions every run benchmarks
SUITE: list[tuple[str, str | None, dict[str, Any], list[str]]] = [
    ("dense", None, {}, []),
    *[(f"{m}-{round(s * 100)}", m, {"sparsity": s}, []) for m in ("magnitude", "hydra", "tscnc")
      for s in (0.9, 0.95, 0.99)],
    ("separable-linear", "none", {}, ["separable-linear"]),
    ("channels-50", "none", {}, ["channels:0.5"]),
    ("magnitude-2of4", "magnitude", {"pattern": "2:4"}, []),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", type=Path, default=None, help="robust dense checkpoint (default: train cnn-small here)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", default=None)
    p.add_argument("--only", default="", help="comma-separated variant names to run (default: the whole suite)")
    p.add_argument("--epochs-dense", type=int, default=10)
    p.add_argument("--epochs-prune", type=int, default=2)
    p.add_argument("--epochs-finetune", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="attack steps while training")
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--n", type=int, default=200, help="test images for accuracy and attacks")
    p.add_argument("--attacks", default="pgd20")
    p.add_argument("--square-queries", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="where checkpoints and engines go (default: a temp dir)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--force", action="store_true")
    return p


def _suite(only: str) -> list[tuple[str, str | None, dict[str, Any], list[str]]]:
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in {s[0] for s in SUITE}]
    if unknown:
        raise CompressorError(f"unknown variant {unknown[0]!r} in --only: choose from {', '.join(s[0] for s in SUITE)}")
    return [s for s in SUITE if not names or s[0] in names]


def compress_all(dense: Path, work: Path, suite, args: argparse.Namespace, log: Callable[[str], None]) -> list[dict]:
    """Run every compression of `suite` from `dense`; returns one record per variant (checkpoint, report)."""
    from pruners import prune

    config = TrainConfig(batch_size=64, adv="trades", steps=args.steps, seed=args.seed, device=args.device,
                         log_every=10_000)
    done = []
    for name, method, options, transforms in suite:
        if method is None:
            done.append({"name": name, "checkpoint": str(dense)})
            continue
        out = work / f"{name}.pt"
        rep = prune(dense, method, out, options=options, config=config, dataset=args.dataset,
                    data_root=args.data_root, epochs_prune=args.epochs_prune, epochs_finetune=args.epochs_finetune,
                    eval_n=args.n, transforms=transforms, force=True, quiet=True)
        log(f"{name}: sparsity {rep.sparsity_achieved:.3f}, clean {rep.after['clean_accuracy']:.3f}, "
            f"pgd20 {rep.after['pgd20_accuracy']:.3f} ({rep.seconds:.0f}s)")
        done.append({"name": name, "checkpoint": str(out), "method": method, "options": options,
                     "transforms": transforms, "sparsity": rep.sparsity_achieved, "after": rep.after,
                     "size": rep.size, "seconds": rep.seconds})
    return done


def export_all(records: list[dict], work: Path, args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """Export each variant to ONNX (parity-checked on its test images) next to its checkpoint."""
    from exporters.onnx import export_onnx

    for r in records:
        loaded, data = open_model(r["checkpoint"], dataset=args.dataset, data_root=args.data_root, seed=args.seed)
        sample = data.split("test").head(64).x
        res = export_onnx(loaded.model.eval(), work / f"{r['name']}.onnx", input_shape=tuple(sample.shape[1:]),
                          sample_inputs=sample, parity_inputs=f"{data.info.name} test[:64]", force=True)
        r["onnx"] = {"path": res.path, "file_bytes": res.file_bytes, "max_abs_diff": res.max_abs_diff}
        log(f"{r['name']}: ONNX {res.file_bytes} bytes, max |delta logit| {res.max_abs_diff:.2e}")


def run(args: argparse.Namespace, command: str, log: Callable[[str], None] = print) -> Any:
    """Compress, export, benchmark and write the results (torch pinned to `threads` threads, restored after)."""
    with pinned_threads(args.threads):
        return _run(args, command, log)


def _run(args: argparse.Namespace, command: str, log: Callable[[str], None]) -> Any:
    from exporters.bench import Variant, run_bench
    from exporters.bench_report import check_outputs, write_outputs

    suite = _suite(args.only)
    started = _dt.datetime.now(_dt.timezone.utc)
    slug = re.sub(r"[^a-z0-9]+", "-", args.dataset.lower()).strip("-")
    out_dir = Path(args.out) / f"deploy-{device_kind(args.device)}-{slug}-{started:%Y-%m-%d}"
    check_outputs(out_dir, args.force)
    check_output(out_dir / "suite.json", args.force)
    header = {"started_utc": started.isoformat(timespec="seconds"), "command": command,
              "machine": machine_info(args.device), "versions": library_versions(), "load_average_start": load_average()}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        dense = args.dense
        if dense is None:
            dense = work / "dense.pt"
            cfg = TrainConfig(epochs=args.epochs_dense, batch_size=64, adv="trades", steps=args.steps, seed=args.seed,
                              device=args.device, log_every=10_000)
            trained = train("cnn-small", args.dataset, dense, cfg, data_root=args.data_root, force=True, quiet=True)
            log(f"dense: cnn-small, TRADES {args.epochs_dense} epochs ({trained['seconds']:.0f}s)")
        records = compress_all(Path(dense), work, suite, args, log)
        export_all(records, work, args, log)
        variants = [Variant(Path(r["checkpoint"]), engine) for r in records
                    for engine in (None, Path(r["onnx"]["path"]))]
        report = run_bench(variants, batch_sizes=[int(b) for b in args.batch_sizes.split(",")], warmup=args.warmup,
                           runs=args.runs, threads=args.threads, device=args.device,
                           attacks=[a for a in args.attacks.split(",") if a], n=args.n,
                           square_queries=args.square_queries, seed=args.seed, dataset=args.dataset,
                           data_root=args.data_root, log=log)
    header["load_average_end"] = load_average()
    paths = write_outputs(report.to_dict(), out_dir, force=args.force)
    md = paths["md"].read_text()
    lines = markdown_header(f"Deployment suite on {args.dataset} ({device_kind(args.device)})", header)
    atomic_write_text(paths["md"], "\n".join(lines) + "\n\n" + md)
    atomic_write_text(out_dir / "suite.json", to_json({**header, "suite": records}) + "\n")
    log(f"wrote {out_dir}")
    return report


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status (2 on a user error)."""
    return run_main("deploy", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
