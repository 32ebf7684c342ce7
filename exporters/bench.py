"""The latency-robustness benchmark: every variant (a model, optionally run through an exported engine) is timed over
a batch-size sweep in interleaved rounds (all sessions open, round-robin, so a busy machine's drift hits every variant
alike), with the speedup over the first variant and its confidence interval; then each is attacked, one runtime
session at a time, with pinned threads and the environment recorded.

Robustness of an engine: white-box attacks run on the *source* PyTorch model (an engine has no gradients), the
engine is scored on those transferred examples and compared with the source's predictions, and a black-box
Square attack runs directly against the engine. ``robust_accuracy`` is the per-sample worst case of both.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import functools
import gc
import math
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from compressor.attacks import build_attack, preserved_rng
from compressor.checkpoint import library_versions
from compressor.environment import cpu_model, gpu_driver, pinned_threads
from compressor.errors import CompressorError
from compressor.evaluation import evaluate
from compressor.progress import bar, paused
from compressor.pt2_trust import check_program_trusted
from compressor.settings import with_options
from compressor.workflows import open_model

from .base import file_bytes, parse_batch_sizes
from .engines import engine_exporter, engine_format, open_runner
from .latency import latency_stats
from .runners import TorchRunner, run_many
from .speedup import decide, interleaved_rounds, interval_text, speedup_interval

FORMAT = "compressor.bench/1"
AGREEMENT_WARN = 0.9  # an engine agreeing less with its source model on clean images is warned about
Log = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """One benchmarked configuration: a source model file and, optionally, an engine exported from it."""

    model: Path
    engine: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.model.stem}:{engine_format(self.engine)}" if self.engine else f"{self.model.stem}:pytorch"


@dataclass(frozen=True)
class Timing:
    """How latency is measured: the `batch_sizes` swept, `warmup` untimed and `runs` timed runs per variant and batch
    size (split over `rounds` interleaved rounds), with `threads` pinned, on `device`."""

    batch_sizes: Sequence[int] = (1, 64)
    warmup: int = 10
    runs: int = 50
    rounds: int = 10
    threads: int = 1
    device: str = "cpu"


@dataclass(frozen=True)
class Scoring:
    """How accuracy and robustness are measured: white-box `attacks` (at `eps`, None: the dataset's, in `norm`) on `n`
    test images, a black-box Square attack of `square_queries` queries (0: none), all seeded with `seed`."""

    attacks: Sequence[str] = ("pgd20",)
    eps: float | None = None
    norm: str = "linf"
    n: int = 200
    square_queries: int = 1000
    seed: int = 0


@dataclass
class Source:
    """A source model opened once for all its variants: the model, its test images, the white-box attacks and their
    results (None until the first of its variants is scored)."""

    loaded: Any
    split: Any
    attacks: list[Any]
    white: dict[str, Any] | None = None


@dataclass
class SourceScores:
    """White-box results on a variant's source model (its engines are scored on these examples)."""

    clean_accuracy: float
    attacks: dict[str, float]  # attack -> accuracy
    worst_case_accuracy: float | None
    warnings: list[str]


@dataclass
class SquareResult:
    """The black-box Square attack run directly against a variant."""

    attack: str
    accuracy: float
    seconds: float
    protocol: dict[str, Any]


@dataclass
class BenchRecord:
    """One benchmarked variant: size, latency sweep, memory, accuracy, transfer and Square robustness."""

    name: str
    model: str
    engine: str | None
    format: str
    file_bytes: int
    providers: list[str]
    precision: str
    latency: list[dict[str, Any]]  # per batch size: `latency_stats`, rounds, per-round p50 and `speedup`
    clean_accuracy: float
    agreement_clean: float  # fraction of clean predictions equal to the source model's
    transfer: dict[str, dict[str, float]]  # attack -> source_accuracy, accuracy, agreement
    transfer_worst_case: float | None
    square: SquareResult | None  # None with `square_queries` 0
    robust_accuracy: float  # per-sample worst case of the transferred attacks and Square (when run)
    warnings: list[str]
    memory: dict[str, Any]
    normalization: dict[str, Any] | None
    source: SourceScores
    notes: list[str] = field(default_factory=list)  # why a row cannot be faster here, a fixed batch, ...

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (keys as in bench.json)."""
        return asdict(self)


@dataclass
class BenchReport:
    """What `run_bench` measured: the environment, the settings and one record per variant."""

    format: str
    created: str
    environment: dict[str, Any]
    settings: dict[str, Any]
    variants: list[BenchRecord]
    seconds: float
    speed_warnings: list[str] = field(default_factory=list)  # speedup intervals that contain 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (bench.json; what `bench_report` formats)."""
        return asdict(self)


def parse_variants(specs: Sequence[str], engines: Sequence[Path] = (), *,
                   trust_program: bool = False) -> list[Variant]:
    """Variants from ``MODEL`` or ``MODEL=ENGINE`` arguments; ``--engine`` files pair with the single MODEL.

    A bare MODEL benchmarks PyTorch eager; with ``--engine`` and one MODEL, the model runs eager and through
    each engine. A ``.pt2`` model or AOTInductor engine is refused here, before anything runs, unless
    `trust_program`.
    """
    variants = []
    for spec in specs:
        model, _, engine = spec.partition("=")
        variants.append(Variant(Path(model), Path(engine) if engine else None))
    if engines:
        models = list(dict.fromkeys(v.model for v in variants))
        if len(models) != 1:
            raise CompressorError("`engine` pairs with a single MODEL; with several models write MODEL=ENGINE")
        variants += [Variant(models[0], Path(e)) for e in engines]
    if not variants:
        raise CompressorError("nothing to benchmark: give at least one MODEL (or MODEL=ENGINE)")
    for v in variants:
        for p, what in ((v.model, "model"), (v.engine, "engine")):
            if p is not None and not p.is_file():
                raise CompressorError(f"{what} {p} does not exist: check the path")
        if v.model.suffix == ".pt2":
            check_program_trusted(v.model, trust_program)
        if v.engine is not None:  # an unknown type fails here too
            engine_exporter(v.engine).check_trusted(v.engine, trust_program)
    return list(dict.fromkeys(variants))


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            line = next((ln for ln in f if ln.startswith(field + ":")), None)
        return int(line.split()[1]) * 1024 if line else None
    except (OSError, ValueError):
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory above the starting point: the kernel's RSS high-water mark (reset at the start, so nothing
    samples during timing), else RSS sampled every 20 ms; on CUDA also the allocator's peak."""

    def __init__(self, cuda: bool = False, interval: float = 0.02):
        self.cuda = cuda and torch.cuda.is_available()
        self.interval = interval
        self.base = self.peak = 0
        self.method = "VmHWM (reset at start) - VmRSS at start"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _status_kb("VmRSS") or 0)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        _trim_heap()  # memory freed by an earlier variant goes back to the OS, so this one's allocations show
        self.base = self.peak = _status_kb("VmRSS") or 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.cuda_base = torch.cuda.memory_allocated()
        if not _reset_peak_rss():
            self.method = f"VmRSS sampled every {self.interval * 1e3:.0f} ms - VmRSS at start"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        hwm = (_status_kb("VmHWM") or 0) if self._thread is None else 0
        self.peak = max(self.peak, hwm, _status_kb("VmRSS") or 0)

    def report(self) -> dict[str, Any]:
        """Bytes above the baseline, and how they were measured."""
        out: dict[str, Any] = {"rss_delta_bytes": max(0, self.peak - self.base), "method": self.method}
        if self.cuda:
            out["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated() - self.cuda_base)
        return out


def _trim_heap() -> None:
    """Return the C heap's free memory to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def environment() -> dict[str, Any]:
    """CPU model and cores, GPU and driver when there is one, OS, and the versions of the libraries involved."""
    env: dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "versions": library_versions(), "gpu": None, "cuda": torch.version.cuda}
    for mod in ("onnx", "onnxruntime", "pyautoattack", "tensorrt"):
        try:
            env["versions"][mod] = __import__(mod).__version__
        except Exception:  # optional: recorded only when importable
            pass
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["driver"] = gpu_driver()
    return env


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean()) if len(y) else 0.0


def _source_attacks(model: torch.nn.Module, split: Any, attacks: Sequence[Any], seed: int,
                    device: str = "cpu") -> dict[str, Any]:
    """White-box attacks on the source model (on the GPU when benchmarking there), keeping the adversarial images."""
    import copy

    dev = torch.device(device if device.startswith("cuda") else "cpu")
    model = copy.deepcopy(model).to(dev) if dev.type == "cuda" else model
    with preserved_rng(dev):
        torch.manual_seed(seed)
        return evaluate(model, split, attacks, batch_size=256, device=dev, keep_adv=True)


def _open(variant: Variant, source: Any, device: str, threads: int, trust_program: bool = False) -> Any:
    """A runner for `variant`: its engine's session (an AOTInductor engine only with `trust_program`), or the source
    model eager."""
    return open_runner(variant.engine, device=device, threads=threads, trust_program=trust_program) \
        if variant.engine else TorchRunner(source.model, device)


def fixed_batch(variant: Variant, source: Any) -> int | None:
    """The one batch size a variant runs at (a torch.export program traced for a static batch), else None."""
    return None if variant.engine else getattr(source.model, "static_batch", None)


def _batch(x: torch.Tensor, b: int) -> torch.Tensor:
    return x[torch.arange(b) % len(x)].contiguous()


def bench_variant(variant: Variant, source: Source, *, latency: list[dict[str, Any]], memory_batch: int,
                  timing: Timing, square: Any, seed: int, notes: Sequence[str] = (),
                  trust_program: bool = False) -> BenchRecord:
    """Open one session for `variant`, measure its peak memory, score it, close it (`source`: its source model, with
    the white-box results; `latency`: its records from `time_variants`)."""
    split, white, warmup, device = source.split, source.white, timing.warmup, timing.device
    x, y = split.float_images(), split.y
    row: dict[str, Any] = {"latency": latency}
    runner = None
    try:
        with PeakMemory(cuda=device.startswith("cuda")) as mem:  # a fixed window: open, warm-up runs at one batch
            runner = _open(variant, source.loaded, device, timing.threads, trust_program)
            xb = _batch(x, memory_batch)
            for _ in range(max(1, warmup)):
                runner(xb)
        memory = {**mem.report(), "window": f"session open + {max(1, warmup)} runs at batch {memory_batch}"}
        row["providers"] = list(runner.providers)
        row["precision"] = getattr(runner, "precision", "fp32")
        predict = lambda inp: run_many(runner, inp)  # noqa: E731  (any batch size, within the engine's range)
        with torch.no_grad():
            pred = predict(x).argmax(1)
            src_pred = source.loaded.model(x).argmax(1)
        row["clean_accuracy"] = _accuracy(pred, y)
        row["agreement_clean"] = float((pred == src_pred).float().mean())
        transfer: dict[str, Any] = {}
        ok_all = pred == y
        for name, x_adv in white["adversarial"]["x_adv"].items():
            with torch.no_grad():
                p_eng = predict(x_adv).argmax(1)
                p_src = source.loaded.model(x_adv).argmax(1)
            transfer[name] = {"source_accuracy": white["attacks"][name]["accuracy"],
                              "accuracy": _accuracy(p_eng, y),
                              "agreement": float((p_eng == p_src).float().mean())}
            ok_all &= p_eng == y
        row["transfer"] = transfer
        row["transfer_worst_case"] = float(ok_all.float().mean()) if transfer else None
        row["square"], row["warnings"] = None, []
        if square is not None:  # `square_queries` 0: no black-box attack on the engine
            with preserved_rng("cpu"):
                torch.manual_seed(seed)
                res = evaluate(predict, split, [square], batch_size=256, device="cpu", keep_adv=True)
            ok_all = ok_all & res["adversarial"]["robust"][square.name]
            row["square"] = SquareResult(square.name, res["attacks"][square.name]["accuracy"],
                                         res["attacks"][square.name]["seconds"], square.protocol())
            row["warnings"] = list(res["warnings"])
        row["robust_accuracy"] = float(ok_all.float().mean())
        if variant.engine and row["agreement_clean"] < AGREEMENT_WARN:
            row["warnings"].append(
                f"the engine agrees with its source model {variant.model} on only {row['agreement_clean']:.0%} "
                f"of clean images (expected >= {AGREEMENT_WARN:.0%}): it was probably exported from another "
                "model; pass the model it was exported from")
    finally:
        if runner is not None:
            runner.close()
        del runner
    scores = SourceScores(white["clean_accuracy"], {k: r["accuracy"] for k, r in white["attacks"].items()},
                          white.get("worst_case_accuracy"), white["warnings"])
    return BenchRecord(name=variant.name, model=str(variant.model),
                       engine=str(variant.engine) if variant.engine else None,
                       format=engine_format(variant.engine) if variant.engine else "pytorch",
                       file_bytes=file_bytes(variant.engine or variant.model), **row, memory=memory,
                       normalization=source.loaded.normalization, source=scores, notes=list(notes))


def time_variants(runners: Sequence[Any], x: torch.Tensor, batch_sizes: Sequence[int],
                  fixed: Sequence[int | None], *, warmup: int, runs: int, rounds: int,
                  device: str = "cpu") -> list[list[dict[str, Any]]]:
    """Latency of every runner at every batch size, timed in interleaved rounds (`runs` timed runs each, split over
    `rounds`), with the speedup over ``runners[0]`` per item and its interval; one list of records per runner.

    A runner with a `fixed` batch is timed at that batch (not padded), its record naming the requested size."""
    rounds = max(1, min(rounds, runs))
    per_round = math.ceil(runs / rounds)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    out: list[list[dict[str, Any]]] = [[] for _ in runners]
    for b in batch_sizes:
        used = [f or b for f in fixed]
        fns = [functools.partial(r, _batch(x, u)) for r, u in zip(runners, used)]
        times = interleaved_rounds(fns, rounds=rounds, runs=per_round, warmup=warmup, sync=sync)
        medians = np.median(times, axis=2)  # (rounds, runners)
        per_item = medians / np.asarray(used, float)
        for v, u in enumerate(used):
            rec: dict[str, Any] = {**latency_stats(times[:, v, :], warmup=warmup, batch_size=u), "rounds": rounds,
                                   "round_p50": [float(t) for t in medians[:, v]]}
            if u != b:
                rec["requested_batch_size"] = b
            if v == 0:
                rec["speedup"] = {"reference": True, "speedup": 1.0, "low": 1.0, "high": 1.0, "rounds": rounds,
                                  "decision": "reference"}
            else:
                interval = speedup_interval(per_item[:, 0], per_item[:, v])
                rec["speedup"] = {**interval, "decision": decide(interval)}
            out[v].append(rec)
    return out


def speed_warnings(records: Sequence[BenchRecord]) -> list[str]:
    """One line per variant and batch size whose speedup interval contains 1 (the spread exceeds the difference)."""
    out = []
    for r in records:
        for lat in r.latency:
            sp = lat.get("speedup", {})
            if sp.get("decision") == "unclear":
                out.append(f"{r.name} at batch {lat['batch_size']}: speedup {interval_text(sp)} contains 1 - the "
                           "spread between rounds is larger than the difference; more `runs`/`rounds` or a quieter "
                           "machine may decide it")
    return out


def format_notes(variant: Variant, source: Any, runtime: str, fixed: int | None,
                 batch_sizes: Sequence[int]) -> list[str]:
    """Why a row cannot be faster on this runtime (unstructured or N:M zeros run dense), and a fixed batch."""
    notes = []
    weights = [p for p in source.model.parameters() if p.dim() >= 2]
    total = sum(p.numel() for p in weights)
    zeros = sum(int((p == 0).sum()) for p in weights) / total if total else 0.0
    ck = getattr(source, "checkpoint", None)
    recorded = [e for e in (ck.compression if ck is not None else []) if e.get("kind") in ("prune", "transform")]
    nm = next((str(e["pattern"]) for e in recorded if ":" in str(e.get("pattern") or "")), None)
    nm = nm or next((e.get("pattern") or "2:4" for e in recorded if e.get("name") == "nm"), None)
    if nm and zeros > 0.1 and not runtime.startswith("tensorrt"):
        notes.append(f"{nm} sparsity ({zeros:.0%} zeros) needs sparse tensor cores (TensorRT on an Ampere or newer "
                     f"GPU); {runtime} runs it dense, so it cannot be faster here")
    elif zeros > 0.1:
        notes.append(f"unstructured sparsity ({zeros:.0%} zeros): {runtime} runs it dense, so it cannot be faster "
                     "here; only removed channels (channels:R) make a model smaller and faster")
    if fixed is not None and any(b != fixed for b in batch_sizes):
        notes.append(f"a program traced for batch {fixed}: timed at batch {fixed}, not padded to "
                     f"{','.join(str(b) for b in batch_sizes if b != fixed)}; its speedup compares time per item")
    return notes


def check_batch_sizes(variants: Sequence[Variant], batch_sizes: Sequence[int], *, device: str = "cpu",
                      threads: int = 1, trust_program: bool = False) -> None:
    """Open each engine (one at a time) and refuse batch sizes outside its range before anything long runs."""
    for v in variants:
        if v.engine is None:
            continue
        runner = open_runner(v.engine, device=device, threads=threads, trust_program=trust_program)
        try:
            for b in batch_sizes:
                runner.check_batch(b)
        finally:
            runner.close()


def run_bench(variants: Sequence[Variant], timing: Timing | None = None, scoring: Scoring | None = None, *,
              dataset: str | None = None, data_root: str | Path | None = None, log: Log | None = None,
              model_options: dict[str, Any] | None = None, **overrides: Any) -> BenchReport:
    """Benchmark every variant; white-box attacks run once per source model and transfer to its engines.

    Latency (`timing`): all sessions open, each batch size timed in `rounds` interleaved rounds (`runs` timed runs per
    variant in all); the first variant is the reference of the speedup column. `overrides` are fields of `Timing` and
    `Scoring` (``warmup=5``, ``n=64``, ...), set over those given. `model_options` (``arch``, ``arch_kwargs``,
    ``mean``, ``std``, ``no_normalize``, ``trust_pickle``, ...: see `compressor.open_model`) say how to open the
    model files; their ``trust_program`` also lets AOTInductor engines load (their shared library runs)."""

    timing, scoring = with_options("run_bench", overrides, Timing if timing is None else timing,
                                   Scoring if scoring is None else scoring)
    warmup, runs, rounds, threads, device = timing.warmup, timing.runs, timing.rounds, timing.threads, timing.device
    eps, norm, seed, square_queries = scoring.eps, scoring.norm, scoring.seed, scoring.square_queries
    sizes = parse_batch_sizes(timing.batch_sizes)
    if runs < 1 or warmup < 0 or scoring.n < 1 or square_queries < 0 or rounds < 1:
        raise CompressorError("`runs`, `rounds` and `n` must be >= 1, `warmup` >= 0 and `square_queries` >= 0 (0: no "
                              "Square attack)")
    log = log or (lambda msg: None)
    trust_program = bool((model_options or {}).get("trust_program", False))
    check_batch_sizes(variants, sizes, device=device, threads=threads, trust_program=trust_program)
    rows, sources, settings = [], {}, {}
    t0 = time.perf_counter()
    with pinned_threads(threads), bar("bench", len(variants)) as done:
        for v in variants:
            if v.model not in sources:
                loaded, data = open_model(v.model, dataset=dataset, data_root=data_root, seed=seed,
                                          **(model_options or {}))
                if data is None:
                    raise CompressorError(f"{v.model} records no dataset: pass `dataset` NAME")
                loaded.model.eval().float()
                eps_v = data.info.default_eps if eps is None else eps
                built = [build_attack(a, eps_v, norm, seed=seed) for a in scoring.attacks]
                if any(not a.white_box for a in built):
                    raise CompressorError("`attacks` are white-box attacks on the source model; the black-box Square "
                                          "attack always runs against each engine (`square_queries`)")
                split = data.split("test").head(scoring.n)
                sources[v.model] = Source(loaded, split, built)
                settings = {"dataset": data.info.name, "split": "test", "n": len(split), "eps": eps_v, "norm": norm}
        fixed = [fixed_batch(v, sources[v.model].loaded) for v in variants]
        log(f"latency of {len(variants)} variants at batch sizes {','.join(map(str, sizes))}: {min(rounds, runs)} "
            "interleaved rounds")
        runners: list[Any] = []
        try:
            for v in variants:
                runners.append(_open(v, sources[v.model].loaded, device, threads, trust_program))
            x = sources[variants[0].model].split.float_images()
            with paused():
                latency = time_variants(runners, x, sizes, fixed, warmup=warmup, runs=runs, rounds=rounds,
                                        device=device)
            runtimes = [r.kind for r in runners]
            providers = [list(r.providers) for r in runners]
        finally:
            for r in runners:
                r.close()
            del runners
        for i, v in enumerate(variants):
            source = sources[v.model]
            if source.white is None:
                log(f"{v.model}: white-box {', '.join(a.name for a in source.attacks)} on {len(source.split)} test "
                    "images")
                source.white = _source_attacks(source.loaded.model, source.split, source.attacks, seed, device)
            square = build_attack(f"square{square_queries}", settings["eps"], norm, seed=seed) if square_queries \
                else None
            log(f"{v.name}: memory, accuracy, transfer" + (f", {square.name}" if square is not None else ""))
            runtime = f"{runtimes[i]} ({', '.join(providers[i])})"
            rows.append(bench_variant(v, source, latency=latency[i], memory_batch=fixed[i] or max(sizes),
                                      timing=timing, square=square, seed=seed,
                                      notes=format_notes(v, source.loaded, runtime, fixed[i], sizes),
                                      trust_program=trust_program))
            done.advance()
    return BenchReport(format=FORMAT, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       environment=environment(),
                       settings={**settings, "batch_sizes": sizes, "warmup": warmup, "runs": runs,
                                 "rounds": min(rounds, runs), "threads": threads, "device": device,
                                 "attacks": list(scoring.attacks), "square_queries": square_queries, "seed": seed,
                                 "reference": variants[0].name},
                       variants=rows, seconds=time.perf_counter() - t0, speed_warnings=speed_warnings(rows))
