"""Training progress: a bar per epoch (loss, clean / adversarial accuracy, images/s) and one summary line per epoch."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from rich.console import Console

from ..progress import Bar, bar, quiet


class TrainProgress:
    """The epoch's bar plus one summary line per epoch; silent when disabled (other ranks, --quiet)."""

    def __init__(self, epochs: int, steps_per_epoch: int, disabled: bool = False, console: Console | None = None):
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.disabled = disabled
        self.console = console
        self._stack = ExitStack()
        self._bar = Bar()

    def __enter__(self) -> "TrainProgress":
        self._stack.enter_context(quiet(self.disabled))  # also silences the validation attacks' bars
        self._bar = self._stack.enter_context(bar("train", self.steps))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def _print(self, text: str) -> None:
        if self.disabled:
            return
        if self.console is not None:
            self.console.print(text, soft_wrap=True)
        else:
            self._bar.print(text)

    def advance_epochs(self, done: int) -> None:
        """Skip epochs already done (after --resume)."""
        if done:
            self._print(f"resuming after epoch {done}/{self.epochs}")

    def start_epoch(self, epoch: int) -> None:
        self._bar.reset(total=self.steps, description=f"epoch {epoch + 1}/{self.epochs}")

    def step(self, step: int) -> None:
        """Steps done this epoch (a count the loop holds: no device sync)."""
        self._bar.update(completed=step)

    def update(self, step: int, running: dict[str, float], images_per_s: float) -> None:
        self._bar.update(completed=step, info=f"loss {running['loss']:.3f}  clean {running['clean']:.3f}  "
                                              f"adv {running['adv']:.3f}  {images_per_s:,.0f} img/s")

    def end_epoch(self, m: dict[str, Any]) -> None:
        parts = [f"epoch {m['epoch']}/{self.epochs}", f"loss {m['loss']:.4f}"]
        for key, label in (("train_clean_acc", "train clean"), ("train_adv_acc", "train adv"),
                           ("val_clean_acc", "val clean"), ("val_pgd_acc", "val pgd")):
            if key in m:
                parts.append(f"{label} {m[key]:.4f}")
        parts.append(f"{m['images_per_s']:,.0f} img/s  {m['epoch_seconds']:.1f}s")
        self._print("  ".join(parts))
