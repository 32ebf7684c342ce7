"""Plain modules from wrapped or parametrized ones: unwrap DDP / torch.compile, fold W ⊙ M into plain weights."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module) and not hasattr(model, "normalize"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def fold_parametrizations(model: nn.Module) -> nn.Module:
    """Replace every parametrized tensor (e.g. a pruning mask's W ⊙ M) by a plain parameter holding its value.

    Unlike ``parametrize.remove_parametrizations``, this never touches the parametrized class, which a deep
    copy shares with the original model: the caller's masked model keeps working.
    """
    for module in model.modules():
        if not parametrize.is_parametrized(module):
            continue
        values = {name: getattr(module, name).detach().clone() for name in module.parametrizations}
        del module._modules["parametrizations"]
        module.__class__ = module.__class__.__bases__[0]  # the class before parametrization
        put_first(module, {k: nn.Parameter(v, requires_grad=False) for k, v in values.items()})
    return forget_ddp_ignores(model)


def put_first(module: nn.Module, params: dict[str, nn.Parameter]) -> None:
    """Set `params` on `module` ahead of its other parameters: the key order before parametrization (weight, bias)."""
    rest = [(k, v) for k, v in module._parameters.items() if k not in params]
    module._parameters.clear()
    module._parameters.update([*params.items(), *rest])


def forget_ddp_ignores(model: nn.Module) -> nn.Module:
    """Drop the DDP ignore list that masks (buffers DDP must not broadcast) left on `model`; returns `model`."""
    if hasattr(model, "_ddp_params_and_buffers_to_ignore"):
        del model._ddp_params_and_buffers_to_ignore
    return model


def prepare_model(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """A deployable copy: masks folded into plain weights, eval mode, CPU, in `precision`; `model` is untouched."""
    model = fold_parametrizations(copy.deepcopy(unwrap_model(model)).cpu().eval())
    for p in model.parameters():
        p.requires_grad_(False)
    return model.half() if precision == "fp16" else model.float()
