"""Released third-party models through the CLI exactly as a user types it, compared with their authors' numbers.

Each row runs ``compressor eval`` (a subprocess, the real entry point) on a state dict from
``../shared/checkpoints`` with its architecture given by a zoo name or an import path, the normalisation the
checkpoints' README states, the whole test file (``--split all``, first N images) and the authors' attack, and
records the command, the accuracies and the normalisation the report says was used. A last row checks that the
same MNIST command without a normalisation is refused (the silent-mean/std bug).

    python benchmarks/outside_models.py --n 1000 --cifar-n 200
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import RESULTS, markdown_header, result_paths, run_main, write_results  # noqa: E402

from compressor.checkpoint import library_versions  # noqa: E402
from compressor.environment import load_average, machine_info  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
CIFAR_NORM = ["--mean", "0.4914,0.4822,0.4465", "--std", "0.2471,0.2435,0.2616"]
# (name, checkpoint, architecture flags, data, eps, attack, authors' clean, authors' robust, authors' note)
ROWS = [
    ("convex_adversarial MNIST", "convexadv_mnist.pth", ["--arch", "convnet-mnist", "--no-normalize"],
     "mnist_test.npz", "0.1", "pgd50", 0.9820, 0.954, "clean: full test set; PGD-50 eps 0.1"),
    ("fast_adversarial MNIST (PGD-trained)", "fastadv_mnist_pgd_madry.pth", ["--arch", "convnet-mnist",
                                                                              "--no-normalize"],
     "mnist_test.npz", "0.3", "pgd50", 0.9899, 0.902, "clean: full test set; PGD-50 eps 0.3 on N=1000"),
    ("alpha-beta-CROWN ResNet-4B (adv. trained)", "abcrown_resnet4b_adv2px.pth",
     ["--arch", "benchmarks.models.abcrown:resnet4b", *CIFAR_NORM], "cifar10_test.npz", "2/255", "pgd20",
     0.7720, 0.617, "clean: full test set; PGD-20 eps 2/255 on N=1000"),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="MNIST test images (the first N).")
    p.add_argument("--cifar-n", type=int, default=1000, help="CIFAR-10 test images (the first N).")
    p.add_argument("--out", default=str(RESULTS), help="Folder for the .json and .md results.")
    p.add_argument("--force", action="store_true", help="Overwrite today's results.")
    return p


def _eval(args: list[str]) -> tuple[dict[str, Any] | None, str, int, str]:
    cmd = [sys.executable, "-m", "compressor", "eval", *args]
    shown = shlex.join(["compressor", "eval", *args])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    res = json.loads(proc.stdout) if proc.returncode == 0 and "--json" in args else None
    return res, shown, proc.returncode, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def run(args: argparse.Namespace, command: str) -> None:
    if not (SHARED / "checkpoints").is_dir():
        raise SystemExit(f"{SHARED / 'checkpoints'} is absent: nothing to measure")
    started = _dt.datetime.now(_dt.timezone.utc)
    stem = f"outside_models-cpu-{started.date()}"
    json_path, md_path = result_paths(args.out, stem, args.force)
    rows = []
    for name, ckpt, arch, data, eps, attack, clean, robust, note in ROWS:
        n = args.cifar_n if data.startswith("cifar") else args.n
        cli_args = [str(SHARED / "checkpoints" / ckpt), *arch, "--dataset", f"npz:{SHARED / 'data' / data}",
                    "--split", "all", "--n", str(n), "--eps", eps, "--attacks", attack, "--json"]
        res, shown, code, err = _eval(cli_args)
        if res is None:
            raise SystemExit(f"{shown} failed ({code}): {err}")
        print(f"{name}: clean {res['clean_accuracy']:.4f}, {attack} {res['attacks'][attack]['accuracy']:.4f} "
              f"(n={res['n']})", file=sys.stderr)
        rows.append({"model": name, "command": shown, "n": res["n"], "eps": eps, "attack": attack,
                     "clean": res["clean_accuracy"], "robust": res["attacks"][attack]["accuracy"],
                     "authors_clean": clean, "authors_robust": robust, "authors_note": note,
                     "normalization": res["normalization"], "seconds": res["attacks"][attack]["seconds"]})
    refused_args = [str(SHARED / "checkpoints" / "fastadv_mnist_pgd_madry.pth"), "--arch", "convnet-mnist",
                    "--dataset", f"npz:{SHARED / 'data' / 'mnist_test.npz'}", "--eps", "0.3", "--attacks", "pgd20"]
    _, shown, code, err = _eval(refused_args)
    res = {"started_utc": started.isoformat(timespec="seconds"), "command": command, "machine": machine_info("cpu"),
           "versions": library_versions(), "load_average_start": load_average(), "rows": rows,
           "no_normalisation": {"command": shown, "exit_code": code, "stderr": err}}
    write_results(res, json_path, md_path, render, lambda m: print(m, file=sys.stderr))


def render(res: dict[str, Any]) -> str:
    lines = markdown_header("Released third-party models through `compressor eval`", res)
    lines += ["", "| model | n | attack (eps) | clean | authors' clean | robust | authors' robust | normalisation "
              "used | attack seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        norm = r["normalization"]
        lines.append(f"| {r['model']} | {r['n']} | {r['attack']} ({r['eps']}) | {r['clean']:.4f} | "
                     f"{r['authors_clean']:.4f} | {r['robust']:.4f} | {r['authors_robust']:.3f} | "
                     f"mean {norm['mean']} std {norm['std']} ({norm['source']}) | {r['seconds']:.1f} |")
    lines += ["", "Authors' numbers: " + "; ".join(f"{r['model']}: {r['authors_note']}" for r in res["rows"]) + ".",
              "Our rows use the first n images of the test file (`--split all --n`), so they differ from the "
              "authors' by sampling error (binomial standard error about sqrt(p(1-p)/n)).", "", "Commands:", ""]
    lines += [f"    {r['command']}" for r in res["rows"]]
    refused = res["no_normalisation"]
    lines += ["", f"Without a normalisation (`{refused['command']}`): exit {refused['exit_code']}, "
              f"`{refused['stderr']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main("outside_models", build_parser, run))
