"""Channel importance for the `channels` transform, as per-layer channel scores that one Torch-Pruning importance
sums over each group of coupled layers (Torch-Pruning keeps the dependency graph; these only rank channels).

- ``taylor``: adversarial first-order Taylor, sum over the channel's weights of |w * dCE(f(x_adv), y)/dw|;
- ``hydra``: a learned score per group of coupled channels, trained through a straight-through top-k gate on the
  adversarial loss with the weights frozen (HYDRA's score search, per channel instead of per weight). HYDRA starts
  its scores from the pretrained weights' magnitudes; per channel the analogue is the adversarial Taylor importance
  (scaled to mean 1 per group). The start matters: a channel the loss does not depend on gets no gradient through
  the gate, so it stays where it started (equal starts leave a dead channel in the kept set for good);
- ``kappa``: the leave-one-out change of log kappa of every weight matrix the channel touches (TSCNC's open
  question 3): removing a channel whose removal lowers the condition numbers comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from compressor.errors import CompressorError

from ..scores import ScoreSource

OUT, IN = "out", "in"
Key = tuple[nn.Module, str]  # (layer, OUT or IN): scores over that layer's output or input channels
SVD_CHUNK = 1 << 24  # elements of the stacked leave-one-out matrices decomposed at once (64 MiB of float32)


def _handlers() -> dict[Any, str]:
    from torch_pruning.pruner import function

    return {function.prune_conv_out_channels: OUT, function.prune_linear_out_channels: OUT,
            function.prune_conv_in_channels: IN, function.prune_linear_in_channels: IN}


def channel_importance(scores: dict[Key, torch.Tensor], normalizer: str | None = None):
    """A Torch-Pruning importance: for each group, the mean over its layers of their channel `scores` (higher =
    keep), aligned on the group's root channels; layers without scores do not count."""
    import torch_pruning as tp

    handlers = _handlers()

    class ChannelScoreImportance(tp.importance.GroupMagnitudeImportance):
        def __init__(self) -> None:
            super().__init__(group_reduction="mean", normalizer=normalizer)

        @torch.no_grad()
        def __call__(self, group):
            imps, roots = [], []
            for item in group:
                s = scores.get((item.dep.target.module, handlers.get(item.dep.handler, "")))
                if s is not None:
                    imps.append(s[list(item.idxs)].float())
                    roots.append(item.root_idxs)
            if not imps:
                return None
            return self._normalize(self._reduce(imps, roots), self.normalizer)

    return ChannelScoreImportance()


def weight_channel_sums(weight_scores: dict[nn.Module, torch.Tensor]) -> dict[Key, torch.Tensor]:
    """Per-weight scores summed over each output channel and over each input channel of every layer."""
    out: dict[Key, torch.Tensor] = {}
    for layer, s in weight_scores.items():
        out[(layer, OUT)] = s.flatten(1).sum(1)
        out[(layer, IN)] = s.transpose(0, 1).flatten(1).sum(1)
    return out


def _groups(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module]) -> list[Any]:
    import torch_pruning as tp

    graph = tp.DependencyGraph().build_dependency(model, example, verbose=False)
    return list(graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.modules.conv._ConvNd, nn.Linear]))


def _members(group: Any, kind: str) -> Iterable[tuple[nn.Module, list[int], list[int]]]:
    """(layer, its channel indices, the matching root indices) of the group's `kind` (OUT/IN) dependencies."""
    handlers = _handlers()
    for item in group:
        if handlers.get(item.dep.handler) == kind:
            yield item.dep.target.module, list(item.idxs), list(item.root_idxs)


# -- kappa -------------------------------------------------------------------------------------------------------

def log_kappa(matrices: torch.Tensor) -> torch.Tensor:
    """log(sigma_max / sigma_min) of each matrix of a (..., m, n) stack, over its min(m, n) singular values."""
    s = torch.linalg.svdvals(matrices.double())
    return (s[..., 0].clamp_min(1e-300).log() - s[..., -1].clamp_min(1e-300).log()).float()


def leave_one_out_log_kappa(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """For each channel along `dim` (0: output, 1: input) of a Conv/Linear weight, the change of log kappa of the
    weight matrix (out x in*kh*kw) when that channel is removed (negative: the removal improves conditioning)."""
    w = weight.detach().float()
    n = w.shape[dim]
    if n < 2:
        return torch.zeros(n, device=w.device)
    base = log_kappa(w.flatten(1))
    moved = w.movedim(dim, 0)  # channel first: (n, ...)
    keep = torch.stack([torch.cat([torch.arange(c), torch.arange(c + 1, n)]) for c in range(n)]).to(w.device)
    per = max(1, SVD_CHUNK // max(1, (n - 1) * moved[0].numel()))
    deltas = []
    for lo in range(0, n, per):
        stack = moved[keep[lo:lo + per]]  # (chunk, n-1, ...)
        stack = stack.movedim(1, dim + 1)  # back to the layer's layout, one channel fewer
        deltas.append(log_kappa(stack.flatten(2)) - base)
    return torch.cat(deltas)


def kappa_scores(layers: Iterable[nn.Module]) -> dict[Key, torch.Tensor]:
    """Leave-one-out change of log kappa for the output and input channels of every Conv/Linear layer."""
    out: dict[Key, torch.Tensor] = {}
    for layer in layers:
        if getattr(layer, "groups", 1) != 1:  # a grouped conv's matrix is block-diagonal: no single kappa to track
            continue
        out[(layer, OUT)] = leave_one_out_log_kappa(layer.weight, 0)
        out[(layer, IN)] = leave_one_out_log_kappa(layer.weight, 1)
    return out


# -- hydra -------------------------------------------------------------------------------------------------------

def keep_count(width: int, ratio: float, round_to: int) -> int:
    """Channels a group of `width` keeps at `ratio` removed, rounded as the transform rounds (at least one)."""
    removed = int(width * ratio)
    if round_to > 1 and width > round_to:
        removed = removed // round_to * round_to
    return max(1, width - removed)


def top_k_gate(scores: torch.Tensor, k: int) -> torch.Tensor:
    """1 for the `k` highest scores, else 0, with the gradient passed straight through to the scores (HYDRA)."""
    hard = torch.zeros_like(scores)
    hard[scores.detach().topk(k).indices] = 1.0
    return hard + scores - scores.detach()


class ChannelGates:
    """A learned score per group of coupled channels; forward pre-hooks multiply every layer that reads the group's
    channels by the group's top-k gate, which is the same as removing the unkept channels."""

    def __init__(self, model: nn.Module, example: torch.Tensor, ignored: list[nn.Module], ratio: float,
                 round_to: int, init: Any = None, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.groups: list[tuple[nn.Parameter, int, list[tuple[nn.Module, list[int], list[int]]]]] = []
        readers: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor, int]]] = {}
        for group in _groups(model, example, ignored):
            outs = list(_members(group, OUT))
            if not outs:
                continue
            width = int(outs[0][0].weight.shape[0])
            start = init(group) if init is not None else None  # a Torch-Pruning importance, or equal scores
            start = torch.ones(width) if start is None or not float(start.mean()) > 0 else start.cpu() / start.mean()
            # tiny seeded noise breaks ties
            score = nn.Parameter((start.float() + 1e-3 * torch.rand(width, generator=gen)).to(example.device))
            index = len(self.groups)
            self.groups.append((score, keep_count(width, ratio, round_to), outs))
            for layer, idxs, roots in _members(group, IN):
                readers.setdefault(layer, []).append((torch.tensor(idxs, device=example.device),
                                                      torch.tensor(roots, device=example.device), index))
        self.handles = [layer.register_forward_pre_hook(self._hook(layer, entries))
                        for layer, entries in readers.items()]

    def _hook(self, layer: nn.Module, entries: list[tuple[torch.Tensor, torch.Tensor, int]]):
        channel_dim = 1 if isinstance(layer, nn.modules.conv._ConvNd) else -1

        def hook(module: nn.Module, args: tuple) -> tuple:
            x = args[0]
            gate = torch.ones(x.shape[channel_dim], device=x.device, dtype=x.dtype)
            for idxs, roots, g in entries:
                score, k, _ = self.groups[g]
                gate = gate.index_put((idxs,), top_k_gate(score, k)[roots].to(x.dtype))
            shape = [1] * x.dim()
            shape[channel_dim] = -1
            return (x * gate.view(shape), *args[1:])

        return hook

    @property
    def scores(self) -> list[nn.Parameter]:
        return [s for s, _, _ in self.groups]

    def layer_scores(self) -> dict[Key, torch.Tensor]:
        """The learned scores as output-channel scores of every layer of each group."""
        out: dict[Key, torch.Tensor] = {}
        for score, _, outs in self.groups:
            for layer, idxs, roots in outs:
                s = out.setdefault((layer, OUT), torch.zeros(layer.weight.shape[0], device=score.device))
                s[idxs] = score.detach()[roots]
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


@dataclass(frozen=True)
class ScoreTraining:
    """How the channel scores are learned: `epochs` passes over the score data (at most `samples` examples each,
    None: all), Adam at `lr`."""

    epochs: int
    lr: float = 0.01
    samples: int | None = None


def hydra_scores(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module], source: ScoreSource, *,
                 ratio: float, round_to: int, training: ScoreTraining, init: Any = None,
                 seed: int = 0) -> dict[Key, torch.Tensor]:
    """Train one score per group of coupled channels as `training` says, over `source`, with the weights and
    batch-norm statistics frozen, starting from importance `init` (a Torch-Pruning importance; None: equal); the
    scores as output-channel scores."""
    gates = ChannelGates(model, example, ignored, ratio, round_to, init, seed)
    if not gates.groups:
        gates.remove()
        return {}
    # Adam: a step per score independent of the gradient's scale, which differs between layers and losses
    opt = torch.optim.Adam(gates.scores, lr=training.lr)
    was_training = model.training
    model.eval()
    try:
        for epoch in range(training.epochs):
            seen = 0
            for x, y in source.iterate(seed + epoch):
                loss = source.loss(model, x, y)
                if not torch.isfinite(loss):
                    raise CompressorError("the adversarial loss became non-finite while learning channel scores: "
                                          "lower `score_epochs` or check the model")
                grads = torch.autograd.grad(loss, gates.scores, allow_unused=True)
                for s, g in zip(gates.scores, grads):
                    s.grad = torch.zeros_like(s) if g is None else g
                opt.step()
                seen += len(y)
                if training.samples is not None and seen >= training.samples:
                    break
    finally:
        gates.remove()
        model.train(was_training)
    return gates.layer_scores()


def finite(scores: dict[Key, torch.Tensor], what: str) -> dict[Key, torch.Tensor]:
    """`scores`, refused in one line when any is NaN (e.g. a layer whose weights hold NaN)."""
    if any(not bool(torch.isfinite(s).all()) for s in scores.values()):
        raise CompressorError(f"`transforms` channels importance={what} gave non-finite channel scores: check the "
                              "model's weights, or choose importance=magnitude")
    return scores


__all__ = ["ScoreTraining", "channel_importance", "hydra_scores", "kappa_scores", "keep_count",
           "leave_one_out_log_kappa", "log_kappa", "weight_channel_sums", "finite"]
