"""Parameter-free shortcuts that subsample and zero-pad channels (ResNet option A, e.g. the akamaster CIFAR
ResNets' ``LambdaLayer``) rewritten as frozen 0/1 strided 1x1 convolutions computing the same output, so that
Torch-Pruning can follow the residual stream through them and thin it. A module is rewritten only when its
output on random inputs is exactly such a selection (found from its behaviour, not from its code or name)."""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch
from torch import nn

from compressor.errors import CompressorError

from .base import example_input

PROBES = 2  # random inputs a candidate must reproduce exactly


class SelectShortcut(nn.Conv2d):
    """Output channel o = input channel i subsampled by `stride`, for each (i, o) of `pairs`; the others zero.

    A convolution so that Torch-Pruning can cut its input and output channels; its 0/1 weight is frozen and it is
    not a prunable layer (`prunable_weight = False`): no pruner masks it and no optimiser moves it."""

    prunable_weight = False

    def __init__(self, in_channels: int, out_channels: int, stride: int, pairs: list[tuple[int, int]]):
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=False)
        with torch.no_grad():
            self.weight.zero_()
            for i, o in pairs:
                self.weight[o, i] = 1.0
        self.weight.requires_grad_(False)


def _selection(module: nn.Module, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict[str, Any] | None:
    """The (stride, pairs) that `module` computes on inputs of `shape`, or None when it is no channel selection."""
    c_in, h, w = shape[1:]
    c_out, ho, wo = out_shape[1:]
    if ho == 0 or h % ho or w % wo or h // ho != w // wo:
        return None
    stride = h // ho
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, c_in, h, w, generator=gen)
    with torch.no_grad():
        y = module(x)
    sub = x[:, :, ::stride, ::stride]
    if tuple(y.shape) != (2, c_out, ho, wo) or tuple(sub.shape[2:]) != (ho, wo):
        return None
    pairs = []
    for o in range(c_out):
        if torch.count_nonzero(y[:, o]) == 0:
            continue
        match = [i for i in range(c_in) if torch.equal(y[:, o], sub[:, i])]
        if len(match) != 1:
            return None
        pairs.append((match[0], o))
    conv = SelectShortcut(c_in, c_out, stride, pairs)
    with torch.no_grad():
        for _ in range(PROBES):
            x = torch.randn(2, c_in, h, w, generator=gen)
            if not torch.equal(conv(x), module(x)):
                return None
    return {"in_channels": c_in, "out_channels": c_out, "stride": stride, "pairs": pairs}


def find_shortcuts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Leaf modules without parameters or buffers that change the channel count of a 4-D tensor and compute a
    channel selection (`_selection`); already rewritten ones are listed with their current selection."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    found: dict[str, dict[str, Any]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, SelectShortcut):
            found[name] = {"in_channels": m.in_channels, "out_channels": m.out_channels, "stride": m.stride[0],
                           "pairs": [(int(i), int(o)) for o, i in torch.nonzero(m.weight[:, :, 0, 0]).tolist()]}
        elif name and next(chain(m.children(), m.parameters(recurse=False), m.buffers(recurse=False)), None) is None:
            def hook(mod, args, out, name=name):
                if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor) \
                        and args[0].dim() == 4 and out.dim() == 4 and args[0].shape[1] != out.shape[1]:
                    shapes[name] = (tuple(args[0].shape), tuple(out.shape))
            hooks.append(m.register_forward_hook(hook))
    if hooks:  # no bare leaf module: nothing to trace
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                model(example_input(model, input_shape))
        finally:
            for h in hooks:
                h.remove()
            model.train(was_training)
    for name, (shape, out_shape) in shapes.items():
        sel = _selection(model.get_submodule(name), shape, out_shape)
        if sel is not None:
            found[name] = sel
    return dict(sorted(found.items()))


def _install(model: nn.Module, name: str, spec: dict[str, Any]) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    ref = next(model.parameters(), None)
    conv = SelectShortcut(spec["in_channels"], spec["out_channels"], spec["stride"], [tuple(p) for p in spec["pairs"]])
    setattr(parent, attr, conv.to(device=ref.device, dtype=ref.dtype) if ref is not None else conv)


def rewrite_shortcuts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """Replace every channel-selecting shortcut of `model` in place by its `SelectShortcut`; all of them, by name."""
    found = find_shortcuts(model, input_shape)
    for name, spec in found.items():
        if not isinstance(model.get_submodule(name), SelectShortcut):
            _install(model, name, spec)
    return found


def restore_shortcuts(model: nn.Module, recorded: dict[str, dict[str, Any]], input_shape: tuple[int, ...]) -> None:
    """Rewrite the shortcuts a checkpoint recorded, after checking that this model's modules compute them."""
    found = find_shortcuts(model, input_shape)
    for name, spec in recorded.items():
        got = found.get(name)
        if got is None or [tuple(p) for p in got["pairs"]] != [tuple(p) for p in spec["pairs"]] \
                or got["stride"] != spec["stride"] or got["out_channels"] != spec["out_channels"]:
            raise CompressorError(f"the checkpoint's channels entry rewrote the shortcut {name}, which this "
                                  "architecture does not compute: the file was written for another model definition")
        if not isinstance(model.get_submodule(name), SelectShortcut):
            _install(model, name, spec)
