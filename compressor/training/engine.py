"""The training engine: standard, PGD-AT and TRADES; per-epoch state for --resume; best-by-validation."""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import BatchLoader, DataBundle
from ..errors import CompressorError
from ..evaluation import evaluate
from ..attacks import PGD
from ..io import atomic_write
from ..parsing import check_eps_range, check_seed
from .callbacks import Callback, StopTraining
from .distributed import DistContext, all_reduce_sum, barrier, init_distributed
from .losses import craft_pgd_at, craft_trades, trades_loss
from .progress import TrainProgress

STATE_FORMAT = "compressor.train-state"
ADV_MODES = ("none", "pgd", "trades")
SCHEDULES = ("cosine", "multistep", "constant")
CRAFT_MODES = ("auto", "train", "eval")
AMP_MODES = ("auto", "on", "bf16", "off")
CHANNELS_LAST_MODES = ("auto", "on", "off")


# settings that do not change the result: a run may resume with other values (e.g. on another device)
RESUME_FREE = frozenset({"device", "log_every", "channels_last"})


def _plain(obj: Any) -> Any:
    """Settings as plain JSON-like values (tuples as lists), comparable and loadable with weights_only."""
    return json.loads(json.dumps(obj, default=str))


def _show(value: Any) -> str:
    return "unset" if value is None else (json.dumps(value) if not isinstance(value, str) else value)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with the state, so --resume uses the same)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the run, for multistep
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    adv: str = "pgd"
    eps: float | None = None  # None: the dataset's default budget
    alpha: float | None = None  # default 2.5 * eps / steps (2/255 at 8/255 and 10 steps)
    steps: int = 10
    beta: float = 6.0
    norm: str = "linf"
    # model mode while crafting training examples: train (BatchNorm in train mode, as Madry et al.'s PGD-AT and Ye
    # et al.'s robust ADMM reference code do), eval (as the TRADES reference code does), or auto: train for PGD-AT,
    # eval for TRADES
    craft_mode: str = "auto"
    val_steps: int = 10
    val_n: int | None = 1000
    select: str = "auto"  # robust, clean or last; auto = robust for adversarial training, else clean
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CUDA), on (bf16 autocast on any device; "bf16" is the same) or off
    channels_last: str = "auto"  # auto (on CUDA), on or off
    log_every: int = 10

    def validate(self) -> None:
        """Reject impossible settings with one clear line."""
        check_seed(self.seed)
        if self.adv not in ADV_MODES:
            raise CompressorError(f"unknown `adv` '{self.adv}': choose one of {', '.join(ADV_MODES)}")
        if self.schedule not in SCHEDULES:
            raise CompressorError(f"unknown `schedule` '{self.schedule}': choose one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise CompressorError("`epochs` and `batch_size` must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise CompressorError(f"`lr` must be a finite number > 0, got {self.lr}")
        if not all(math.isfinite(v) for v in (self.momentum, self.weight_decay, self.beta)):
            raise CompressorError(f"`momentum`, `weight_decay` and `beta` must be finite (got {self.momentum}, "
                                  f"{self.weight_decay}, {self.beta})")
        if self.adv != "none" and self.eps is not None and not self.eps > 0:
            raise CompressorError(f"`eps` must be > 0 for adversarial training, got {self.eps}")
        if self.eps is not None:
            check_eps_range(self.eps, self.norm)
        if not (self.weight_decay >= 0 and self.momentum >= 0 and self.steps >= 1 and self.beta >= 0):
            raise CompressorError(f"`weight_decay`, `momentum` and `beta` must be >= 0 and `steps` >= 1 (got "
                                  f"{self.weight_decay}, {self.momentum}, {self.beta}, {self.steps})")
        if self.select not in ("auto", "robust", "clean", "last"):
            raise CompressorError(f"unknown `select` '{self.select}': choose robust, clean or last")
        if self.craft_mode not in CRAFT_MODES:
            raise CompressorError(f"`craft_mode` must be train, eval or auto, got '{self.craft_mode}'")
        if self.amp not in AMP_MODES:
            raise CompressorError(f"`amp` must be on, off or auto, got '{self.amp}'")
        if self.channels_last not in CHANNELS_LAST_MODES:
            raise CompressorError(f"`channels_last` must be on, off or auto, got '{self.channels_last}'")

    @property
    def step_size(self) -> float:
        return 2.5 * self.eps / self.steps if self.alpha is None else self.alpha

    @property
    def crafting(self) -> str:
        """The model mode while crafting training examples (craft_mode with auto resolved for this `adv`)."""
        if self.craft_mode != "auto":
            return self.craft_mode
        return "train" if self.adv == "pgd" else "eval"

    @property
    def selection(self) -> str:
        if self.select != "auto":
            return self.select
        return "robust" if self.adv != "none" else "clean"


@dataclass
class TrainResult:
    """What a run produced: per-epoch history and the selected epoch's validation metrics."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    marks = [m * total for m in cfg.milestones]

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(step >= m for m in marks)
        return 1.0

    return factor


STATE_KEYS = ("epoch", "global_step", "model", "optimizer", "scheduler", "best_score", "best_state", "best_epoch",
              "best_metrics", "history", "rng", "callbacks")
# settings that fingerprint an input (DataBundle.fingerprint, a source file's digest) and what they stand for
FINGERPRINTS = {"data": "the data", "source_model": "the source model file"}


def read_state(path: Path) -> dict[str, Any]:
    """A saved training state, checked to be complete (one line for a missing, corrupt or incomplete file)."""
    if not path.is_file():
        raise CompressorError(f"no training state at {path} to resume from: run without `resume` to start afresh")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CompressorError(f"cannot read training state {path} ({type(exc).__name__}): it is corrupt; "
                              "delete it and start afresh") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CompressorError(f"{path} is not a compressor training state")
    missing = [k for k in STATE_KEYS if k not in state] + ([] if isinstance(state.get("rng"), dict)
                                                           and "cpu" in state["rng"] else ["rng.cpu"])
    if missing:
        raise CompressorError(f"training state {path} lacks {', '.join(dict.fromkeys(missing))}: it is incomplete; "
                              "delete it and start afresh")
    return state


def check_fingerprints(state: Mapping[str, Any], settings: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume `state` when an input it fingerprints (the data, the source model) has changed since."""
    saved = state.get("settings") or {}
    for key, what in FINGERPRINTS.items():
        if key in saved and key in settings and saved[key] != settings[key]:
            raise CompressorError(f"cannot `resume` {path}: {what} changed since the saved run (fingerprint "
                                  f"{settings[key]}, saved run: {saved[key]}): restore it, or start afresh without "
                                  "`resume`")


class Diverged(CompressorError):
    """Training produced a non-finite loss or weight; raised before anything of that state is saved."""


class Trainer:
    """Runs a training schedule on a model; pruners plug in through `Callback`s, never by copying this loop.

    `fit` is `start`, then per epoch `begin_epoch`, the `training_step`s, validation and the saved state: code that
    times or inspects single steps (benchmarks, tests) calls the same `start` / `begin_epoch` / `training_step`.

    A non-finite loss or weight stops the run with `Diverged` at the next logging point (every `log_every` steps
    and at the end of each epoch, where the host synchronises anyway): the per-epoch state on disk is the last
    good one, and nothing of the diverged epoch is validated, selected or saved.
    """

    def __init__(self, model: nn.Module, data: DataBundle, config: TrainConfig,
                 callbacks: Sequence[Callback] = (), *, state_path: str | Path | None = None,
                 ctx: DistContext | None = None, quiet: bool = False, console=None,
                 settings: Mapping[str, Any] | None = None, lr_option: str = "lr"):
        if config.eps is None:
            config = replace(config, eps=data.info.default_eps)
        config = replace(config, craft_mode=config.crafting)  # recorded as used
        config.validate()
        self.config = config
        # what else shapes the result (architecture, dataset, pruner and its options...): saved with the state,
        # and a --resume with other values is refused
        self.settings = _plain({"dataset": data.info.name, "data": data.fingerprint(), **(settings or {})})
        self.data = data
        self.callbacks = list(callbacks)
        self.state_path = Path(state_path) if state_path else None
        self.ctx = ctx or init_distributed(config.device)
        self.quiet = quiet or not self.ctx.is_main
        self.console = console
        dev = self.ctx.device
        self.amp = config.amp in ("on", "bf16") or (config.amp == "auto" and dev.type == "cuda")
        self.channels_last = config.channels_last == "on" or (config.channels_last == "auto" and dev.type == "cuda")
        self.model = model.to(dev)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = self.model  # what the training forward goes through (DDP wrapper if any)
        self.loader = BatchLoader(data.train, config.batch_size, shuffle=True, augment=data.info.augment,
                                  drop_last=len(data.train) >= config.batch_size * self.ctx.world_size,
                                  seed=config.seed, rank=self.ctx.rank, world_size=self.ctx.world_size, device=dev)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.epoch = 0
        self.global_step = 0
        self.result = TrainResult()
        self._best_score = -math.inf
        self._best_state: dict[str, torch.Tensor] | None = None
        self.lr_option = lr_option  # the option that sets this run's learning rate, named in a divergence message
        self._first_bad = torch.full((), -1, dtype=torch.long, device=dev)  # first non-finite global step, on device
        self.started = False
        self.resumed = False  # whether `start` loaded a saved state

    # ----------------------------------------------------------------- setup
    def build_optimizer(self) -> None:
        """(Re)build the optimiser and schedule, e.g. after a transform changed the parameters."""
        groups = None
        for cb in self.callbacks:
            groups = cb.param_groups(self) or groups
        params = groups if groups is not None else [p for p in self.model.parameters()]
        cfg = self.config
        self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg, len(self.loader)))
        for _ in range(self.global_step):  # keep the schedule's position when rebuilt mid-run
            self.scheduler.step()
        if self.ctx.distributed and self.net is self.model:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids)
        for cb in self.callbacks:
            cb.on_optimizer(self, self.optimizer)

    def start(self, resume: bool = False) -> None:
        """Set the run up as `fit` does: the callbacks' `on_train_begin`, the optimiser and schedule (the callbacks'
        `on_optimizer`) and, with `resume`, the saved state; then `begin_epoch` and `training_step` drive it by hand.
        A second call does nothing."""
        if self.started:
            if resume and not self.resumed:
                raise CompressorError("`resume` after the trainer was started afresh: pass resume=True to the first "
                                      "start() (or fit()) of this Trainer")
            return
        if resume and self.state_path is None:
            raise CompressorError("`resume` needs the training state path")
        for cb in self.callbacks:
            cb.on_train_begin(self)
        self.build_optimizer()
        if resume:
            self.load_state(self.state_path)
        self.started, self.resumed = True, resume

    def begin_epoch(self) -> None:
        """Enter epoch `self.epoch` (after `start`): the loader's shuffle for it, the callbacks' `on_epoch_begin`
        and train mode."""
        if not self.started:
            raise CompressorError("Trainer.begin_epoch() before Trainer.start(): start the run first")
        self.loader.set_epoch(self.epoch)
        for cb in self.callbacks:
            cb.on_epoch_begin(self, self.epoch)
        self.model.train()

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The full training state at the end of an epoch."""
        rng = {"cpu": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        return {
            "format": STATE_FORMAT, "format_version": 1, "epoch": self.epoch, "global_step": self.global_step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "best_score": self._best_score,
            "best_state": self._best_state, "best_epoch": self.result.best_epoch,
            "best_metrics": self.result.best_metrics, "history": self.result.history, "rng": rng,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()},
            "settings": self.settings,
        }

    def save_state(self) -> None:
        """Write the training state atomically (rank 0 only)."""
        if self.state_path is not None and self.ctx.is_main:
            state = self.state_dict()
            atomic_write(self.state_path, lambda tmp: torch.save(state, tmp))

    def load_state(self, path: str | Path) -> None:
        """Continue from a saved training state."""
        path = Path(path)
        state = read_state(path)
        self.check_resumable(state, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self._best_score, self._best_state = state["best_score"], state["best_state"]
        self.result.best_epoch, self.result.best_metrics = state["best_epoch"], state["best_metrics"]
        self.result.history = list(state["history"])
        torch.set_rng_state(state["rng"]["cpu"])
        if "cuda" in state["rng"] and self.ctx.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.ctx.device)
        for cb, cb_state in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(cb_state)

    def check_resumable(self, state: Mapping[str, Any], path: Path) -> None:
        """Refuse, naming every difference, to resume a run saved with other settings that shape the result."""
        check_fingerprints(state, self.settings, path)
        saved = {**_plain(state.get("config") or {}), **(state.get("settings") or {})}
        now = {**_plain(asdict(self.config)), **self.settings}
        keys = set(saved) | set(now) if "settings" in state else set(saved)  # a state from before settings: config
        keys -= {k for k in FINGERPRINTS if k not in saved}  # a state from before fingerprints
        diff = [f"{k.replace('_', '-')} {_show(now.get(k))} (saved run: {_show(saved.get(k))})"
                for k in sorted(keys) if k not in RESUME_FREE and saved.get(k) != now.get(k)]
        if diff:
            raise CompressorError(f"cannot `resume` {path} with other settings: {'; '.join(diff)}: rerun with the "
                                  "saved run's settings, or start afresh without `resume`")

    # ----------------------------------------------------------------- steps
    def _craft(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        was_training = self.model.training
        if cfg.crafting == "eval":
            self.model.eval()
        fn = craft_trades if cfg.adv == "trades" else craft_pgd_at
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.amp):
            x_adv = fn(self.model, x, y, eps=cfg.eps, alpha=cfg.step_size, steps=cfg.steps, norm=cfg.norm)
        self.model.train(was_training)
        return x_adv

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step; returns detached per-batch sums (no host synchronisation)."""
        cfg = self.config
        if self.optimizer is None:
            raise CompressorError("Trainer.training_step() before Trainer.start(): start the run first")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x_adv = self._craft(x, y) if cfg.adv != "none" else None
        out: dict[str, torch.Tensor] = {}
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.amp):
            if cfg.adv == "none":
                logits = self.net(x)
                loss = F.cross_entropy(logits.float(), y)
                out["clean_correct"] = (logits.argmax(1) == y).sum()
            elif cfg.adv == "pgd":
                logits = self.net(x_adv)
                loss = F.cross_entropy(logits.float(), y)
                out["adv_correct"] = (logits.argmax(1) == y).sum()
            else:
                logits_nat = self.net(x)
                logits_adv = self.net(x_adv)
                loss = trades_loss(logits_nat, logits_adv, y, cfg.beta)
                out["clean_correct"] = (logits_nat.argmax(1) == y).sum()
                out["adv_correct"] = (logits_adv.argmax(1) == y).sum()
            for cb in self.callbacks:
                extra = cb.extra_loss(self, x, y)
                if extra is not None:
                    loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for cb in self.callbacks:
            cb.on_after_backward(self)
        self.optimizer.step()
        self._track_finite(loss)
        self.scheduler.step()
        self.global_step += 1
        for cb in self.callbacks:
            cb.on_step_end(self)
        out["loss"] = loss.detach() * len(y)
        return out

    def _track_finite(self, loss: torch.Tensor) -> None:
        """Record (on the device, without a host synchronisation) the first step whose loss or weights are not finite."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        with torch.no_grad():
            norms = torch.stack([loss.detach().float().reshape(()), *torch._foreach_norm(params)])
            bad = ~torch.isfinite(norms).all()
            self._first_bad = torch.where(bad & (self._first_bad < 0), self.global_step, self._first_bad)

    def check_finite(self, epoch_start: int) -> None:
        """Stop with one line naming the epoch, step and learning rate when a step so far was not finite."""
        bad = self._first_bad >= 0
        # [ranks that diverged, sum of their first bad steps]: one synchronisation; DDP's averaged gradients make
        # every rank diverge at the same step
        flags, steps = all_reduce_sum(torch.stack([bad.long(), torch.where(bad, self._first_bad, 0)]),
                                      self.ctx).tolist()
        if not flags:
            return
        first = steps // flags + 1
        lr = self.optimizer.param_groups[0]["lr"]
        kept = (f"the last good state (end of epoch {self.epoch}) is kept in {self.state_path}: `resume` continues "
                "from it" if self.epoch and self.state_path is not None and self.ctx.is_main
                else "nothing was saved")
        raise Diverged(f"training diverged at epoch {self.epoch + 1}, step {first - epoch_start} (learning rate "
                       f"{lr:.3g}): the loss or the weights became NaN/inf, most likely because the learning rate is "
                       f"too high for this model (or its data is not finite): lower `{self.lr_option}` (e.g. "
                       f"{lr / 10:.3g}); {kept}")

    def validate(self) -> dict[str, float]:
        """Clean and PGD accuracy on the validation split (eval mode, fp32), sharded over ranks."""
        cfg = self.config
        val = self.data.val.head(cfg.val_n) if cfg.val_n else self.data.val
        shard = val.subset(torch.arange(self.ctx.rank, len(val), self.ctx.world_size))
        attacks = [PGD(cfg.eps, cfg.norm, steps=cfg.val_steps)] if cfg.adv != "none" or cfg.select == "robust" else []
        res = evaluate(self.model, shard, attacks, batch_size=max(cfg.batch_size, 256), device=self.ctx.device)
        counts = torch.tensor([res["clean_accuracy"] * res["n"],
                               (res["attacks"][attacks[0].name]["accuracy"] * res["n"]) if attacks else 0.0,
                               float(res["n"])], dtype=torch.float64, device=self.ctx.device)
        counts = all_reduce_sum(counts, self.ctx).tolist()
        metrics = {"val_clean_acc": counts[0] / max(counts[2], 1)}
        if attacks:
            metrics["val_pgd_acc"] = counts[1] / max(counts[2], 1)
        return metrics

    # ----------------------------------------------------------------- loop
    def fit(self, resume: bool = False) -> TrainResult:
        """Train for the configured epochs (continuing a saved state with `resume`) and load the best weights."""
        cfg = self.config
        t_start = time.perf_counter()
        self.start(resume)
        with TrainProgress(cfg.epochs, len(self.loader), disabled=self.quiet, console=self.console) as progress:
            progress.advance_epochs(self.epoch)
            try:
                while self.epoch < cfg.epochs:
                    self._run_epoch(progress)
            except StopTraining:
                pass
        for cb in self.callbacks:
            cb.on_train_end(self)
        if self._best_state is not None and cfg.selection != "last":
            self.model.load_state_dict(self._best_state)
        barrier(self.ctx)
        self.result.seconds = time.perf_counter() - t_start
        return self.result

    def _run_epoch(self, progress) -> None:
        cfg = self.config
        epoch = self.epoch
        self.begin_epoch()
        dev = self.ctx.device
        sums = {k: torch.zeros((), device=dev) for k in ("loss", "clean_correct", "adv_correct")}
        seen = 0
        t0 = time.perf_counter()
        progress.start_epoch(epoch)
        epoch_start = self.global_step
        for step, (x, y) in enumerate(self.loader):
            out = self.training_step(x, y)
            for k, v in out.items():
                sums[k] += v
            seen += len(y)
            if (step + 1) % cfg.log_every == 0 or step + 1 == len(self.loader):
                self.check_finite(epoch_start)
                progress.update(step + 1, self._running(sums, seen), seen * self.ctx.world_size / (time.perf_counter() - t0))
            else:
                progress.step(step + 1)
        train_time = time.perf_counter() - t0
        totals = all_reduce_sum(torch.stack([sums["loss"], sums["clean_correct"], sums["adv_correct"],
                                             torch.tensor(float(seen), device=dev)]), self.ctx).tolist()
        n = max(totals[3], 1)
        metrics: dict[str, Any] = {"epoch": epoch + 1, "loss": totals[0] / n, "lr": self.optimizer.param_groups[0]["lr"],
                                   "images_per_s": totals[3] / train_time, "epoch_seconds": train_time}
        if cfg.adv in ("none", "trades"):
            metrics["train_clean_acc"] = totals[1] / n
        if cfg.adv != "none":
            metrics["train_adv_acc"] = totals[2] / n
        metrics.update(self.validate())
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, metrics)
        score = {"robust": metrics.get("val_pgd_acc", -1.0), "clean": metrics["val_clean_acc"],
                 "last": float(epoch)}[cfg.selection]
        if score > self._best_score:
            self._best_score = score
            self._best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
            self.result.best_epoch = epoch + 1
            self.result.best_metrics = dict(metrics)
        self.result.history.append(metrics)
        self.epoch = epoch + 1
        self.save_state()
        progress.end_epoch(metrics)

    @staticmethod
    def _running(sums: dict[str, torch.Tensor], seen: int) -> dict[str, float]:
        vals = torch.stack([sums["loss"], sums["clean_correct"], sums["adv_correct"]]).tolist()  # one sync
        return {"loss": vals[0] / seen, "clean": vals[1] / seen, "adv": vals[2] / seen}
