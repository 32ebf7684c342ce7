"""`channels`: structured channel/filter removal through Torch-Pruning's dependency graph, recorded as its
pruning history so that the smaller architecture is rebuilt from a checkpoint without pickles."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from compressor.analysis import PRUNABLE, is_prunable
from compressor.attacks import AttackBudget
from compressor.errors import CompressorError
from compressor.training import DistContext

from .. import register_transform
from ..masking import MaskedLayers, finalize
from ..scores import split_source, taylor_scores
from .channel_scores import (ScoreTraining, channel_importance, finite, hydra_scores, kappa_scores,
                             weight_channel_sums)
from .base import (GLOBS, SpecOptions, Transform, TransformContext, example_input, match_layers, output_shape,
                   parse_globs, run_problem, user_name)
from .shortcuts import restore_shortcuts, rewrite_shortcuts

TRIAL_RATIO = 0.5  # the trial removals that find coupled layers, before a target search has chosen the ratio
IMPORTANCES = ("magnitude", "taylor", "hydra", "kappa", "pruner")
SHORTCUTS = ("select", "keep")
NEEDS_RATIO = "`transforms` channels needs the ratio of channels to remove: e.g. channels:0.5 (or give `target_macs` or `target_speedup`)"


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # not a number: the message below
    if not (math.isfinite(value) and 0 < value < 1):
        raise CompressorError(f"`transforms` channels:{text}: the ratio of channels removed must be in (0, 1), e.g. "
                              "channels:0.5")
    return value


def _round_to(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _shortcuts(text: str) -> str:
    if text not in SHORTCUTS:
        raise ValueError(text)
    return text


def _importance(text: str) -> str:
    if text not in IMPORTANCES:
        raise CompressorError(f"`transforms` channels: unknown importance '{text}': choose "
                              f"{', '.join(IMPORTANCES)}")
    return text


@register_transform()
class Channels(Transform):
    """Remove a ratio of channels/filters through Torch-Pruning's graph (magnitude, Taylor, HYDRA, kappa, pruner).

    Importance (`pruners.transforms.channel_scores`): L2 magnitude; adversarial Taylor |w * dCE(x_adv)/dw| summed
    over the channel's weights; HYDRA scores learned per channel for score_epochs through a top-k gate with the
    weights frozen; the leave-one-out change of log kappa of the layers a channel touches; or the paired pruner's
    scores; summed over the coupled layers. Counts are rounded to multiples of round_to; the output layer is kept.

    Shortcuts that subsample and zero-pad channels without parameters (ResNet option A) are rewritten as frozen 0/1
    strided 1x1 convolutions computing the same output (`shortcuts=select`, `pruners.transforms.shortcuts`), so the
    residual stream is thinned too; with `shortcuts=keep` the layers coupled to them stay at full width instead.
    """

    name = "channels"
    stage = 1
    structural = True
    OPTIONS = ("ratio", "importance", "round_to", "ignore", "samples", "score_epochs", "shortcuts")

    def __init__(self, ratio: float | None, importance: str = "magnitude", round_to: int = 8,
                 ignore: list[str] | None = None, samples: int = 256, score_epochs: int = 1,
                 shortcuts: str = "select"):
        self.ratio, self.importance, self.round_to = ratio, importance, round_to
        self.ignore, self.samples, self.score_epochs, self.shortcuts = ignore, samples, score_epochs, shortcuts
        self._coupled: tuple[int, tuple[str, ...], list[str]] | None = None  # (model id, ignored, kept): searched once

    @classmethod
    def from_spec(cls, arg: str | None, options: SpecOptions) -> "Channels":
        ratio = options.take("ratio", _ratio, None) if arg is None else _ratio(arg)
        epochs_given = "score_epochs" in options.options
        rest = (options.take("importance", _importance, "magnitude"),
                options.take("round_to", _round_to, 8, "positive integer"),
                options.take("ignore", parse_globs, None, GLOBS),
                options.take("samples", _round_to, 256, "positive integer"),
                options.take("score_epochs", _round_to, 1, "positive integer"),
                options.take("shortcuts", _shortcuts, "select", " or ".join(SHORTCUTS)))
        options.finish(cls.OPTIONS)
        if epochs_given and rest[0] != "hydra":
            raise CompressorError("`transforms` channels: score_epochs is an option of importance=hydra: drop it or "
                                  "choose importance=hydra")
        return cls(ratio, *rest)  # no ratio: a speed or MACs target chooses it (`prune` checks that one is given)

    def pruner_options(self, method: str, options: dict[str, Any]) -> dict[str, Any]:
        if self.importance == "pruner" and method == "none":
            raise CompressorError("`transforms` channels:...,importance=pruner needs a pruner: pass `method` (e.g. "
                                  "tscnc) or choose importance=magnitude or taylor")
        return options

    def prepare(self, model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
        """With shortcuts=select, rewrite `model`'s channel-selecting shortcuts in place (same output); all of them."""
        return rewrite_shortcuts(model, input_shape) if self.shortcuts == "select" else {}

    def ignored(self, model: nn.Module) -> list[str]:
        """Layers whose output channels stay: the ignore globs, by default the output (last Linear) layer."""
        if self.ignore is not None:
            return match_layers(model, self.ignore, PRUNABLE, "`transforms` channels ignore")
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        return linears[-1:]

    def check(self, model: nn.Module) -> None:
        if any(getattr(m, "prunable_weight", False) for m in model.modules()):
            raise CompressorError("`transforms` channels cannot run on a model with separable (Kronecker) layers: "
                                  "remove channels first, then apply separable-linear")
        self.ignored(model)

    def _train_config(self, context: TransformContext) -> Any:
        """The training settings of a data-driven importance (the dataset's default eps when none is given)."""
        if context.data is None or context.config is None:
            raise CompressorError(f"`transforms` channels importance={self.importance} needs data: pass `dataset`")
        return context.config if context.config.eps is not None else replace(context.config,
                                                                              eps=context.data.info.default_eps)

    def _weight_scores(self, model: nn.Module, context: TransformContext,
                       kind: str = "taylor") -> dict[nn.Module, torch.Tensor]:
        """Per-weight importance from adversarial Taylor or from the paired pruner (masks put on, then removed)."""
        cfg = self._train_config(context)
        pruner = context.pruner if kind == "pruner" else None
        try:
            if kind == "taylor":
                layers = MaskedLayers(model)
                layers.install()
                budget = AttackBudget(cfg.eps, alpha=cfg.step_size, steps=cfg.steps, norm=cfg.norm)
                scores = taylor_scores(model, layers, context.data.train, budget, samples=self.samples,
                                       batch_size=cfg.batch_size, seed=cfg.seed, ctx=context.ctx)
            else:
                ctx = context.ctx or DistContext(device=next(model.parameters()).device)
                model.to(ctx.device)
                pruner.prepare(model, seed=cfg.seed, score_data=split_source(
                    context.data.train, eps=cfg.eps, alpha=cfg.step_size, steps=cfg.steps, norm=cfg.norm,
                    batch_size=cfg.batch_size, ctx=ctx))
                layers = pruner.layers
                scores = pruner.scores()
        finally:
            finalize(model)
            if pruner is not None:
                pruner.layers = None  # re-attached to the smaller model later
        if len(scores) != len(layers.modules):
            raise CompressorError(f"pruner {pruner.name} has no scores before its prune phase (they are learned): use "
                                  "importance=magnitude or taylor")
        return {m: s.detach().float() for m, s in zip(layers.modules, scores)}

    def _trial(self, model: nn.Module, input_shape: tuple[int, ...], ignored: list[str],
               group_of: str | None = None) -> str | None:
        """Remove channels from a copy of `model` (all groups, or only the group of layer `group_of`) and say why
        the copy does not run to the same output shape (None when it does); `model` is left as it was."""
        import torch_pruning as tp

        expected = output_shape(model, input_shape)
        ratio = self.ratio or TRIAL_RATIO
        trial = copy.deepcopy(model).eval()
        self.prepare(trial, input_shape)
        example = example_input(trial, input_shape)
        if group_of is None:
            tp.pruner.BasePruner(trial, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                 pruning_ratio=ratio, ignored_layers=[trial.get_submodule(n) for n in ignored],
                                 round_to=self.round_to).step()
        else:
            layer = trial.get_submodule(group_of)
            graph = tp.DependencyGraph().build_dependency(trial, example, verbose=False)
            fn = tp.prune_conv_out_channels if isinstance(layer, nn.modules.conv._ConvNd) else \
                tp.prune_linear_out_channels
            width = int(layer.weight.shape[0])
            count = min(width - 1, max(1, int(width * ratio) // self.round_to * self.round_to or 1))
            if count < 1:
                return None
            graph.get_pruning_group(layer, fn, idxs=list(range(count))).prune()
        return run_problem(trial, input_shape, expected)

    def coupled(self, model: nn.Module, input_shape: tuple[int, ...], ignored: list[str]) -> list[str]:
        """Layers whose output channels feed an operation Torch-Pruning cannot follow (a parameter-free shortcut
        that slices or pads channels, a custom op), found by trial removals on copies: kept at full width.

        A one-line error when the model still does not run with them kept."""
        problem = self._trial(model, input_shape, ignored)
        if problem is None:
            return []
        import torch_pruning as tp

        copied = copy.deepcopy(model).eval()
        self.prepare(copied, input_shape)
        graph = tp.DependencyGraph().build_dependency(copied, example_input(model, input_shape), verbose=False)
        names = {id(m): n for n, m in graph.model.named_modules()}
        out_fns = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)
        kept: list[str] = []
        for group in graph.get_all_groups(ignored_layers=[graph.model.get_submodule(n) for n in ignored],
                                          root_module_types=[nn.modules.conv._ConvNd, nn.Linear]):
            members = [names[id(dep.target.module)] for dep, _ in group
                       if dep.handler in out_fns and id(dep.target.module) in names]
            members = [n for n in dict.fromkeys(members) if n not in ignored]
            if members and self._trial(model, input_shape, ignored, group_of=members[0]) is not None:
                kept += members
        problem = self._trial(model, input_shape, ignored + kept)
        if problem is not None:
            shown = "|".join(user_name(model, n) for n in kept) or "the layers around it"
            raise CompressorError(f"`transforms` channels: removing channels leaves a model that {problem}, and "
                                  f"keeping the coupled layers ({shown}) does not fix it: Torch-Pruning cannot follow "
                                  "an operation of this model; choose the layers to keep with channels:...,ignore=GLOBS")
        return kept

    def kept_layers(self, model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
        """The ignored layers and those `coupled` finds, searched once per model (a ratio search reuses them)."""
        names = self.ignored(model)
        if self._coupled is None or self._coupled[:2] != (id(model), tuple(names)):
            self._coupled = (id(model), tuple(names), self.coupled(model, input_shape, names))
        return names + self._coupled[2]

    def _hydra_scores(self, model: nn.Module, context: TransformContext, ignored: list[nn.Module]) -> dict:
        cfg = self._train_config(context)
        ctx = context.ctx or DistContext(device=next(model.parameters()).device)
        model.to(ctx.device)
        source = split_source(context.data.train, eps=cfg.eps, alpha=cfg.step_size, steps=cfg.steps, norm=cfg.norm,
                              batch_size=cfg.batch_size, ctx=ctx)
        start = channel_importance(weight_channel_sums(self._weight_scores(model, context, "taylor")))
        return hydra_scores(model, example_input(model, context.input_shape), ignored, source, ratio=self.ratio,
                            round_to=self.round_to, training=ScoreTraining(self.score_epochs), init=start,
                            seed=cfg.seed)

    def _importance(self, model: nn.Module, context: TransformContext, ignored: list[nn.Module]) -> Any:
        """The Torch-Pruning importance object of `importance`."""
        import torch_pruning as tp

        if self.importance == "magnitude":
            return tp.importance.GroupMagnitudeImportance(p=2)
        if self.importance == "kappa":
            layers = [m for m in model.modules() if is_prunable(m)]
            return channel_importance(finite(kappa_scores(layers), "kappa"))
        if self.importance == "hydra":
            return channel_importance(finite(self._hydra_scores(model, context, ignored), "hydra"))
        return channel_importance(weight_channel_sums(self._weight_scores(model, context, self.importance)),
                                  normalizer="mean")

    def remove(self, model: nn.Module, ratio: float, input_shape: tuple[int, ...], ignored: list[nn.Module],
               importance: Any = None) -> Any:
        """Remove `ratio` of the channels of `model` in place (magnitude importance unless given); the pruner."""
        import torch_pruning as tp

        self.prepare(model, input_shape)
        was_training = model.training
        model.eval()
        pruner = tp.pruner.BasePruner(model, example_input(model, input_shape),
                                      importance=importance or tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=ignored, round_to=self.round_to)
        pruner.step()
        model.train(was_training)
        return pruner

    def apply(self, model: nn.Module, context: TransformContext) -> dict[str, Any]:
        if self.ratio is None:
            raise CompressorError(NEEDS_RATIO)
        shortcuts = self.prepare(model, context.input_shape)  # before any score: they see the graph that is cut
        names = self.ignored(model)
        all_kept = self.kept_layers(model, context.input_shape)
        kept = all_kept[len(names):]
        before = channel_counts(model)
        ignored = [model.get_submodule(n) for n in all_kept]
        pruner = self.remove(model, self.ratio, context.input_shape, ignored,
                             self._importance(model, context, ignored))
        history = [[str(name), bool(out), [int(i) for i in idxs]] for name, out, idxs in pruner.pruning_history()]
        after = channel_counts(model)
        return {"name": self.name, "kind": "transform", "structural": True, "ratio": self.ratio,
                "importance": self.importance, **({"score_epochs": self.score_epochs} if self.importance == "hydra" else {}),
                "round_to": self.round_to, "input_shape": list(context.input_shape),
                "ignored": self.ignored_names(model, ignored), "history": history, "channels": after,
                "kept_coupled": [user_name(model, n) for n in kept],
                **({"shortcuts": shortcuts, "rewritten_shortcuts": [user_name(model, n) for n in shortcuts]}
                   if shortcuts else {}),
                "channels_before": sum(before.values()), "channels_after": sum(after.values())}

    @staticmethod
    def ignored_names(model: nn.Module, modules: list[nn.Module]) -> list[str]:
        ids = {id(m) for m in modules}
        return [n for n, m in model.named_modules() if id(m) in ids]

    @classmethod
    def rebuild(cls, model: nn.Module, entry: dict[str, Any]) -> None:
        import torch_pruning as tp

        if entry.get("shortcuts"):
            restore_shortcuts(model, entry["shortcuts"], tuple(entry["input_shape"]))
        graph = tp.DependencyGraph().build_dependency(model, example_input(model, tuple(entry["input_shape"])),
                                                      verbose=False)
        try:
            graph.load_pruning_history(entry["history"])
        except (AttributeError, IndexError, RuntimeError) as exc:
            raise CompressorError(f"the checkpoint's channels entry does not fit the architecture ({exc}): the file "
                                  "was written for another model or is corrupt") from None
        if channel_counts(model) != entry["channels"]:
            raise CompressorError("rebuilding the checkpoint's channel removal gave other channel counts than "
                                  "recorded: the file was written with another model definition")


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels (features) of every Conv/Linear layer."""
    return {n: int(m.weight.shape[0]) for n, m in model.named_modules() if is_prunable(m)}
