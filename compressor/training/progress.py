"""A rich progress bar for training: loss, clean / adversarial accuracy, images/s and ETA."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    """Epoch and step bars plus one summary line per epoch; silent when disabled (other ranks, --quiet)."""

    def __init__(self, epochs: int, steps_per_epoch: int, disabled: bool = False, console: Console | None = None):
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.disabled = disabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "TrainProgress":
        if not self.disabled:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(),
                MofNCompleteColumn(), TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                console=self.console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.steps, epoch=0, epochs=self.epochs, stats="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance_epochs(self, done: int) -> None:
        """Skip epochs already done (after --resume)."""
        if done and not self.disabled:
            self.console.print(f"resuming after epoch {done}/{self.epochs}")

    def start_epoch(self, epoch: int) -> None:
        if self._progress is not None:
            self._progress.reset(self._task, total=self.steps, epoch=epoch + 1, epochs=self.epochs, stats="")

    def update(self, step: int, running: dict[str, float], images_per_s: float) -> None:
        if self._progress is not None:
            stats = f"loss {running['loss']:.3f}  clean {running['clean']:.3f}  adv {running['adv']:.3f}  " \
                    f"{images_per_s:,.0f} img/s"
            self._progress.update(self._task, completed=step, stats=stats)

    def end_epoch(self, m: dict[str, Any]) -> None:
        if self.disabled:
            return
        parts = [f"epoch {m['epoch']}/{self.epochs}", f"loss {m['loss']:.4f}"]
        for key, label in (("train_clean_acc", "train clean"), ("train_adv_acc", "train adv"),
                           ("val_clean_acc", "val clean"), ("val_pgd_acc", "val pgd")):
            if key in m:
                parts.append(f"{label} {m[key]:.4f}")
        parts.append(f"{m['images_per_s']:,.0f} img/s  {m['epoch_seconds']:.1f}s")
        self.console.print("  ".join(parts), soft_wrap=True)
