"""`separable-linear`: Linear layers -> Kronecker-factored layers initialised with the nearest Kronecker product,
with ARLST's condition-number regulariser h(A) as an optional loss term: `ConditionRegularizer`, the training
callback this transform gives the phases after it (weighted by reg=W or the paired pruner's cond_reg)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from compressor.errors import CompressorError
from compressor.training import Callback

from .. import register_transform
from .base import GLOBS, SpecOptions, Transform, TransformContext, match_layers, parse_globs
from .kronecker import KroneckerLinear, auto_factors, from_linear, kronecker_layers, layer_condition_sum


def parse_factors(text: str) -> list[list[int]]:
    """'64x32*64x64' -> [[64, 32], [64, 64]] (A1 is I1 x K1, A2 is I2 x K2)."""
    parts = [p.split("x") for p in text.lower().split("*")]
    if len(parts) != 2 or any(len(p) != 2 for p in parts):
        raise ValueError(text)
    shapes = [[int(a), int(b)] for a, b in parts]
    if any(v < 1 for s in shapes for v in s):
        raise ValueError(text)
    return shapes


FACTORS = "factorisation I1xK1*I2xK2 such as 64x32*64x64 (two factors)"


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(text)
    return value


class ConditionRegularizer(Callback):
    """`weight` x ARLST's h(A) summed over `model`'s separable layers, added to every training step's loss (in a
    loop of your own: add `term()` to the loss)."""

    def __init__(self, model: nn.Module, weight: float, nu: float = 1e-3):
        self.layers = [layer for _, layer in kronecker_layers(model)]
        self.weight, self.nu = weight, nu

    def term(self) -> torch.Tensor | None:
        """The weighted h(A) of this step (None: no separable layer, or weight 0)."""
        if self.weight > 0 and self.layers:
            return self.weight * layer_condition_sum(self.layers, self.nu)
        return None

    def extra_loss(self, trainer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        return self.term()


@register_transform()
class SeparableLinear(Transform):
    """Replace Linear layers (glob; default all but the output layer) by A1 ⊗ A2 Kronecker layers (ARLST)."""

    name = "separable-linear"
    stage = 2
    structural = True
    OPTIONS = ("layers", "factors", "reg", "nu")

    def __init__(self, layers: list[str] | None = None, factors: list[list[int]] | None = None, reg: float = 0.0,
                 nu: float = 1e-3):
        if not 0 < nu < 1:
            raise CompressorError(f"`transforms` separable-linear: nu must be in (0, 1) (ARLST's 0 < nu << 1), got {nu}")
        self.layers, self.factors, self.reg, self.nu = layers, factors, reg, nu
        self.condition = (reg, nu)  # h(A)'s weight and nu in training: the paired pruner's once applied

    @classmethod
    def from_spec(cls, arg: str | None, options: SpecOptions) -> "SeparableLinear":
        layers = options.take("layers", parse_globs, None, GLOBS)
        if arg is not None:
            if layers is not None:
                raise CompressorError("`transforms` separable-linear: give the layer globs once, as ARG or layers=")
            layers = parse_globs(arg)
        t = cls(layers, options.take("factors", parse_factors, None, FACTORS),
                options.take("reg", _positive, 0.0, "number >= 0"), options.take("nu", _positive, 1e-3, "number >= 0"))
        options.finish(cls.OPTIONS)
        return t

    def plan(self, model: nn.Module) -> dict[str, list[list[int]]]:
        """Layer name -> factor shapes; globs, divisibility and parameter savings are checked here."""
        if self.layers is None:
            linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if len(linears) < 2:
                raise CompressorError("`transforms` separable-linear: the model has no Linear layer besides its output "
                                      "layer: name layers with separable-linear:GLOB")
            names = linears[:-1]  # the output layer (class logits) stays dense by default
        else:
            names = match_layers(model, self.layers, (nn.Linear,), "`transforms` separable-linear")
        plan = {}
        for name in names:
            layer = model.get_submodule(name)
            out_f, in_f = layer.out_features, layer.in_features
            factors = self.factors or auto_factors(out_f, in_f)
            (i1, k1), (i2, k2) = factors
            if i1 * i2 != out_f or k1 * k2 != in_f:
                raise CompressorError(f"`transforms` separable-linear: factorisation {i1}x{k1}*{i2}x{k2} does not fit "
                                      f"{name} ({out_f} x {in_f}, out x in): I1*I2 must be {out_f} and K1*K2 {in_f}")
            if i1 * k1 + i2 * k2 >= out_f * in_f:
                raise CompressorError(f"`transforms` separable-linear: {name} ({out_f} x {in_f}) has no factorisation "
                                      "that saves parameters (prime feature counts?): exclude it with a layers= glob")
            plan[name] = [list(map(int, f)) for f in factors]
        return plan

    def check(self, model: nn.Module) -> None:
        self.plan(model)

    def apply(self, model: nn.Module, context: TransformContext | None = None) -> dict[str, Any]:
        config = getattr(context.pruner, "config", None) if context is not None else None
        if config is not None:  # reg/nu are already in it (`pruner_options`), or a preset's default (arlst)
            self.condition = (config.cond_reg, config.cond_nu)
        layers = {}
        for name, factors in self.plan(model).items():
            linear = model.get_submodule(name)
            new = from_linear(linear, factors)
            with torch.no_grad():
                w = linear.weight.double()
                err = float((w - new.weight_matrix().double()).norm() / w.norm().clamp_min(1e-30))
            model.set_submodule(name, new)
            layers[name] = {"factors": factors, "bias": linear.bias is not None, "init_rel_error": err}
        return {"name": self.name, "kind": "transform", "structural": True, "layers": layers, "reg": self.reg,
                "nu": self.nu}

    @classmethod
    def rebuild(cls, model: nn.Module, entry: dict[str, Any]) -> None:
        for name, spec in entry["layers"].items():
            try:
                layer = model.get_submodule(name)
            except AttributeError:
                layer = None
            factors = spec["factors"]
            if not isinstance(layer, nn.Linear) or layer.out_features != factors[0][0] * factors[1][0] or \
                    layer.in_features != factors[0][1] * factors[1][1]:
                raise CompressorError(f"the checkpoint's separable-linear entry does not fit the architecture at "
                                      f"{name}: the file was written for another model or is corrupt")
            model.set_submodule(name, KroneckerLinear(factors, bias=bool(spec["bias"])).to(layer.weight.device))

    def callbacks(self, model: nn.Module) -> list[Callback]:
        """h(A) on the training loss of the phases after the transform, when its weight is > 0."""
        weight, nu = self.condition
        return [ConditionRegularizer(model, weight, nu)] if weight > 0 else []

    def pruner_options(self, method: str, options: dict[str, Any]) -> dict[str, Any]:
        """reg=W,nu=V are the pruner's cond_reg and cond_nu (recorded with its options; one weight, given once)."""
        if self.reg == 0:
            return options
        given = {"cond_reg": self.reg, "cond_nu": self.nu}
        for key, value in given.items():
            if options.get(key) is not None and options[key] != value:
                raise CompressorError(f"`transforms` separable-linear reg/nu and --{key.replace('_', '-')} "
                                      f"{options[key]} disagree: give h(A)'s weight once")
        return {**options, **given}
