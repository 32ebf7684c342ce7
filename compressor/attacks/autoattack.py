"""The AutoAttack family (APGD-CE, APGD-DLR, APGD-T, FAB-T, Square and the AutoAttack suites), run by the
authors' reference implementation (PyPI ``pyautoattack``) behind our `Attack` interface.

Defaults are AutoAttack 'standard''s: APGD 100 steps and 1 restart (APGD-T: 9 target classes), FAB-T
100 steps, 1 restart, 9 targets, Square 5000 queries with p_init 0.8. A step suffix overrides the
steps (``apgd-ce50``, ``apgd-t50x2``), for Square the queries (``square1000``). Every run is seeded,
silent on stdout (pyautoattack's log records become the attack's `warnings`), and leaves the global
RNG state as it was (pyautoattack reseeds it). The model may be any callable ``x -> logits``.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Iterator

import pyautoattack
import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack

from ..errors import CompressorError
from ..registry import ATTACKS
from .base import Attack
from .guards import LogitsFn, logits_fn, preserved_rng

REFERENCE = f"pyautoattack {pyautoattack.__version__}"
NORMS = {"linf": "Linf", "l2": "L2"}
LOGGER = "auto-attack"  # pyautoattack's logger name (AutoAttack's checks, APGD's zero-gradient check)


class _Collect(logging.Handler):
    """Keeps the messages of log records in a list."""

    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


@contextlib.contextmanager
def _quiet(sink: list[str]) -> Iterator[None]:
    """pyautoattack with nothing on stdout and its warnings collected into `sink` instead of logged."""
    logger = logging.getLogger(LOGGER)
    handler, propagate = _Collect(sink), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _positive(name: str, **values: int) -> None:
    bad = {k: v for k, v in values.items() if v < 1}
    if bad:
        raise CompressorError(f"{name} needs {' and '.join(f'{k} >= 1' for k in bad)}, got "
                              f"{', '.join(f'{k} {v}' for k, v in bad.items())}")


class ReferenceAttack(Attack):
    """An attack run by pyautoattack: seeded, quiet, the global RNG preserved, any callable as the model."""

    seeded = True  # build_attack passes the evaluation's seed
    min_classes = 2

    def __init__(self, eps: float, norm: str = "linf", seed: int = 0, **options: Any):
        if not eps >= 0:
            raise CompressorError(f"eps must be >= 0, got {eps}")
        if norm not in NORMS:
            raise CompressorError(f"{self.name} supports the norms {', '.join(NORMS)}, not '{norm}': pass `norm` linf "
                                  "or `norm` l2")
        super().__init__(eps, norm, **options, seed=int(seed), implementation=REFERENCE)
        self.warnings: list[str] = []  # pyautoattack's warnings, for the evaluation report

    @property
    def seed(self) -> int:
        return self.options["seed"]

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if self.eps == 0 or len(x) == 0:
            return x.clone()
        predict = logits_fn(model)
        sink: list[str] = []
        with preserved_rng(x.device), _quiet(sink):
            x_adv = self._run(predict, x.float(), y)
        self.warnings += [f"{self.name}: {m}" for m in sink if f"{self.name}: {m}" not in self.warnings]
        return x_adv.detach()

    def _run(self, predict: LogitsFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _classes(self, predict: LogitsFn, x: torch.Tensor) -> int:
        """The model's class count (one forward of one image), refused when below `min_classes`."""
        with torch.no_grad():
            classes = predict(x[:1]).shape[1]
        if classes < self.min_classes:
            raise CompressorError(f"{self.name} needs at least {self.min_classes} classes and the model has {classes}: "
                                  "use apgd-ce or pgd instead")
        return classes

    def _targets(self, predict: LogitsFn, x: torch.Tensor, wanted: int) -> int:
        """Target classes to use: `wanted`, at most the number of classes minus one."""
        return min(wanted, self._classes(predict, x) - 1)


@ATTACKS.register("apgd-ce")
class APGD(ReferenceAttack):
    """APGD on the cross-entropy (pyautoattack; 100 steps, 1 restart; ``apgd-ceNxR`` for N steps, R restarts)."""

    name = "apgd-ce"
    loss = "ce"

    def __init__(self, eps: float, norm: str = "linf", steps: int = 100, restarts: int = 1, seed: int = 0,
                 eot_iter: int = 1, rho: float = 0.75):
        _positive(self.name, steps=steps, restarts=restarts, eot_iter=eot_iter)
        super().__init__(eps, norm, seed, loss=self.loss, steps=steps, restarts=restarts, eot_iter=eot_iter, rho=rho)

    def _apgd(self, cls: type, predict: LogitsFn, x: torch.Tensor, **extra: Any) -> APGDAttack:
        o = self.options
        return cls(predict, n_iter=o["steps"], norm=NORMS[self.norm], n_restarts=o["restarts"], eps=self.eps,
                   seed=self.seed, eot_iter=o["eot_iter"], rho=o["rho"], verbose=False, device=x.device,
                   logger=logging.getLogger(LOGGER), **extra)

    def _run(self, predict, x, y):
        return self._apgd(APGDAttack, predict, x, loss=self.loss).perturb(x, y)


@ATTACKS.register("apgd-dlr")
class APGDDLR(APGD):
    """APGD on the DLR loss (pyautoattack; 100 steps, 1 restart)."""

    name = "apgd-dlr"
    loss = "dlr"
    min_classes = 3

    def _run(self, predict, x, y):
        self._classes(predict, x)
        return super()._run(predict, x, y)


@ATTACKS.register("apgd-t")
class APGDT(APGD):
    """Targeted APGD on the DLR loss (pyautoattack; 9 target classes, 100 steps and 1 restart each)."""

    name = "apgd-t"
    loss = "dlr-targeted"
    min_classes = 4

    def __init__(self, eps: float, norm: str = "linf", steps: int = 100, restarts: int = 1, seed: int = 0,
                 eot_iter: int = 1, rho: float = 0.75, targets: int = 9):
        _positive(self.name, targets=targets)
        super().__init__(eps, norm, steps, restarts, seed, eot_iter, rho)
        self.options["targets"] = targets

    def _run(self, predict, x, y):
        targets = self._targets(predict, x, self.options["targets"])
        return self._apgd(APGDAttack_targeted, predict, x, n_target_classes=targets).perturb(x, y)


@ATTACKS.register("fab-t")
class FABT(ReferenceAttack):
    """Targeted FAB (pyautoattack; 9 target classes, 100 steps and 1 restart each)."""

    name = "fab-t"

    def __init__(self, eps: float, norm: str = "linf", steps: int = 100, restarts: int = 1, seed: int = 0,
                 targets: int = 9, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9):
        _positive(self.name, steps=steps, restarts=restarts, targets=targets)
        super().__init__(eps, norm, seed, steps=steps, restarts=restarts, targets=targets, alpha_max=alpha_max,
                         eta=eta, beta=beta)

    def _run(self, predict, x, y):
        o = self.options
        fab = FABAttack_PT(predict, norm=NORMS[self.norm], n_restarts=o["restarts"], n_iter=o["steps"], eps=self.eps,
                           alpha_max=o["alpha_max"], eta=o["eta"], beta=o["beta"], verbose=False, seed=self.seed,
                           targeted=True, device=x.device, n_target_classes=self._targets(predict, x, o["targets"]))
        return fab.perturb(x, y)


@ATTACKS.register("square")
class Square(ReferenceAttack):
    """Square, black-box (pyautoattack; 5000 queries, p_init 0.8; ``squareN`` for N queries); any callable model."""

    name = "square"
    white_box = False
    suffix_option = "queries"

    def __init__(self, eps: float, norm: str = "linf", queries: int = 5000, restarts: int = 1, seed: int = 0,
                 p_init: float = 0.8):
        _positive(self.name, queries=queries, restarts=restarts)
        super().__init__(eps, norm, seed, queries=queries, restarts=restarts, p_init=p_init, loss="margin")

    def _run(self, predict, x, y):
        o = self.options
        square = SquareAttack(predict, norm=NORMS[self.norm], n_queries=o["queries"], eps=self.eps, p_init=o["p_init"],
                              n_restarts=o["restarts"], seed=self.seed, verbose=False, loss=o["loss"],
                              resc_schedule=False, device=x.device)
        with torch.no_grad():  # black-box: no graph is ever needed
            return square.perturb(x, y)


@ATTACKS.register("aa")
class AutoAttackSuite(ReferenceAttack):
    """AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square (5000 queries), each on the points still robust."""

    name = "aa"
    version = "standard"
    suffix_option = None
    min_classes = 4

    def __init__(self, eps: float, norm: str = "linf", seed: int = 0):
        super().__init__(eps, norm, seed, version=self.version)
        self.options["attacks"] = describe(self._suite(None, torch.device("cpu"), 9))

    def _suite(self, predict: LogitsFn | None, device: torch.device, targets: int) -> AutoAttack:
        suite = AutoAttack(predict, norm=NORMS[self.norm], eps=self.eps, seed=self.seed, version=self.version,
                           device=device)
        suite.verbose = False
        suite.apgd_targeted.n_target_classes = min(suite.apgd_targeted.n_target_classes, targets)
        suite.fab.n_target_classes = min(suite.fab.n_target_classes, targets)
        return suite

    def _run(self, predict, x, y):
        suite = self._suite(predict, x.device, self._targets(predict, x, 9))
        x_adv, _ = suite.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv


@ATTACKS.register("aa-plus")
class AutoAttackPlus(AutoAttackSuite):
    """AutoAttack plus: APGD-CE and APGD-DLR (5 restarts), FAB (5 restarts), Square, APGD-T, FAB-T."""

    name = "aa-plus"
    version = "plus"


@ATTACKS.register("aa-rand")
class AutoAttackRand(AutoAttackSuite):
    """AutoAttack for randomised models: APGD-CE and APGD-DLR with 20 EOT samples per step."""

    name = "aa-rand"
    version = "rand"
    min_classes = 3


def describe(suite: AutoAttack) -> dict[str, dict[str, Any]]:
    """The settings each attack of a configured pyautoattack `AutoAttack` runs with, in its order."""
    out: dict[str, dict[str, Any]] = {}
    for name in suite.attacks_to_run:
        if name.startswith("apgd"):
            apgd = suite.apgd_targeted if name == "apgd-t" else suite.apgd
            out[name] = {"steps": apgd.n_iter, "restarts": apgd.n_restarts, "eot_iter": apgd.eot_iter,
                         "rho": apgd.thr_decr}
            if name == "apgd-t":
                out[name]["targets"] = apgd.n_target_classes
        elif name.startswith("fab"):
            # run_standard_evaluation runs FAB-T with one restart whatever fab.n_restarts says
            out[name] = {"steps": suite.fab.n_iter, "restarts": 1 if name == "fab-t" else suite.fab.n_restarts}
            if name == "fab-t":
                out[name]["targets"] = suite.fab.n_target_classes
        elif name == "square":
            out[name] = {"queries": suite.square.n_queries, "restarts": suite.square.n_restarts,
                         "p_init": suite.square.p_init}
    return out
