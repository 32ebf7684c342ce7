"""Options shared by several commands."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Optional

import typer
import typer.main
from typer.core import TyperCommand
from typer.models import ParamMeta

from ..errors import CompressorError
from ..filekind import check_regular_file
from ..jobs import ModelSource
from .. import parse_eps, TrainConfig
from ..models import parse_arch_kwargs
from .invocation import FLAGS, INVOCATION, command_line, flag_for, register_flags  # noqa: F401  (moved there)


def default_of(source: Any, name: str) -> Any:
    """The default the library states for option `name`: a config dataclass field's or an API function's keyword's."""
    if dataclasses.is_dataclass(source):
        f = {f.name: f for f in dataclasses.fields(source)}[name]
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return inspect.signature(source).parameters[name].default


def option_from(source: Any, name: str, *decls: str, help: str | None = None, **kwargs: Any) -> Any:
    """A typer option for the library option `name` of `source` (a config dataclass or an API function).

    Its default is the library's, stated once there; its flag is ``--name-with-dashes`` unless `decls` are given;
    its help is the field's ``help`` metadata unless `help` is given.
    """
    if help is None and dataclasses.is_dataclass(source):
        help = {f.name: f for f in dataclasses.fields(source)}[name].metadata.get("help")
    return typer.Option(default_of(source, name), *(decls or ("--" + name.replace("_", "-"),)), help=help, **kwargs)


def click_parameter(name: str, annotation: Any, option: Any) -> Any:
    """The click parameter typer itself builds for ``name: annotation = option`` (for options a command generates)."""
    meta = ParamMeta(name=name, default=option, annotation=annotation)
    build = getattr(typer.main, "get_click_param", None)  # typer < 0.29 names it so and also returns a convertor
    return build(meta)[0] if build is not None else typer.main._get_param(meta)


Dataset = typer.Option(None, "--dataset", "-d", help="Dataset name (see `compressor list datasets`) or npz:PATH.")
DataRoot = typer.Option(None, "--data-root", help="Folder holding the dataset in its usual on-disk format.")
Download = typer.Option(False, "--download", help="Allow downloading the dataset (off: nothing downloads).")
Json = typer.Option(False, "--json", help="Print the report as JSON on stdout.")
Force = typer.Option(False, "--force", help="Overwrite an existing output.")
Quiet = typer.Option(False, "--quiet", "-q", help="No progress output.")
Seed = option_from(TrainConfig, "seed", help="Random seed.")
Device = option_from(TrainConfig, "device", help="auto, cpu, cuda or cuda:N.")
TrustPickle = typer.Option(False, "--trust-pickle",
                           help="Allow loading a pickled nn.Module (runs code from the file: trusted files only).")
Arch = typer.Option(None, "--arch", help="Architecture of a plain state dict: your own model as "
                                          "PACKAGE.MODULE:CALLABLE (a class or factory returning an nn.Module; the "
                                          "working directory is searched), a zoo name (`compressor list models`), "
                                          "tv:<torchvision name> or timm:<timm name>. Repeat it to reload a "
                                          "checkpoint written for an import path.")
ArchKwargs = typer.Option(None, "--arch-kwargs", metavar="JSON",
                          help="Keyword arguments for --arch as a JSON object, e.g. '{\"num_classes\": 10}'.")
NumClasses = typer.Option(None, "--num-classes", help="Number of classes for --arch (default: the dataset's).")
Mean = typer.Option(None, "--mean", help="Per-channel input mean the weights expect, e.g. 0.485,0.456,0.406 "
                                         "(never guessed: a state dict without its own needs this or --no-normalize).")
Std = typer.Option(None, "--std", help="Per-channel input std the weights expect (with --mean).")
NoNormalize = typer.Option(False, "--no-normalize", help="The weights take raw [0, 1] pixels: no input normalisation.")
TrustProgram = typer.Option(False, "--trust-program",
                            help="Allow loading a .pt2 file: a torch.export program or an AOTInductor package (as "
                                 "a model or a bench --engine). Loading one can run code from the file: trusted files "
                                 "only.")
TrustCode = typer.Option(False, "--trust-code", help="Let a checkpoint that names an import path import it without "
                                                     "--arch (runs that code: trusted files only).")
Eps = typer.Option(None, "--eps", help="Perturbation budget, e.g. 8/255 (default: the dataset's).")
CraftMode = option_from(TrainConfig, "craft_mode", help="Model mode while crafting training examples: train (BatchNorm "
                         "in train mode, as Madry et al. / Ye et al.), eval (as the TRADES reference), or auto: train "
                         "for PGD-AT, eval for TRADES.")
Amp = option_from(TrainConfig, "amp", help="bf16 autocast while training: on, off, or auto (on with CUDA; on a "
                  "CPU with AVX512-BF16, on with --channels-last on measured 1.8x faster on a ResNet-20).")
ChannelsLast = option_from(TrainConfig, "channels_last", help="channels_last memory format while training: on, off, "
                           "or auto (on with CUDA).")


def eps_value(text: Optional[str], name: str = "--eps") -> Optional[float]:
    """Parse an eps option; None stays None (the dataset's default)."""
    return None if text is None else parse_eps(text, name=name)


def float_list(text: Optional[str], name: str) -> Optional[list[float]]:
    """Parse ``0.5,0.5,0.5``."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise CompressorError(f"{name} '{text}' must be comma-separated numbers, like 0.5,0.5,0.5") from None


def names_list(text: str) -> list[str]:
    """Parse ``fgsm,pgd20``."""
    return [t.strip() for t in text.split(",") if t.strip()]


MODEL_OPTIONS = "compressor.model_options"  # ctx.meta key: the parsed model options of a ModelCommand, as a dict
MODEL_SOURCE = "compressor.model_source"  # ctx.meta key: the same as a `ModelSource` without its path


def _model_parameters() -> list[Any]:
    return [click_parameter("arch", Optional[str], Arch), click_parameter("arch_kwargs", Optional[str], ArchKwargs),
            click_parameter("num_classes", Optional[int], NumClasses), click_parameter("mean", Optional[str], Mean),
            click_parameter("std", Optional[str], Std), click_parameter("no_normalize", bool, NoNormalize),
            click_parameter("trust_pickle", bool, TrustPickle), click_parameter("trust_code", bool, TrustCode),
            click_parameter("trust_program", bool, TrustProgram)]


class ModelCommand(TyperCommand):
    """A command that takes a model from outside: it gets the model options (--arch ... --trust-program) declared once
    here, and receives them parsed as a `ModelSource` without its path in ``ctx.meta[MODEL_SOURCE]`` (``.at(path)``
    for a file), and as keyword arguments of `open_model` in ``ctx.meta[MODEL_OPTIONS]``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_model_parameters())

    def invoke(self, ctx: Any) -> Any:
        given = {p.name: ctx.params.pop(p.name) for p in _model_parameters()}
        source = model_options(**given)
        ctx.meta[MODEL_SOURCE], ctx.meta[MODEL_OPTIONS] = source, source.options()
        return super().invoke(ctx)


def existing_file(path: Path, what: str = "input") -> Path:
    """Fail with one line if an input file is missing, or is not a regular file (a folder, a FIFO)."""
    return check_regular_file(path, what)


def model_options(arch: Optional[str] = None, arch_kwargs: Optional[str] = None, num_classes: Optional[int] = None,
                  mean: Optional[str] = None, std: Optional[str] = None, no_normalize: bool = False,
                  trust_pickle: bool = False, trust_code: bool = False, trust_program: bool = False) -> ModelSource:
    """The model options of a command, parsed and checked, as a `ModelSource` for a file given later."""
    if arch_kwargs is not None and arch is None:
        raise CompressorError("--arch-kwargs needs --arch: name the class or factory they are for")
    return ModelSource(arch=arch, arch_kwargs=parse_arch_kwargs(arch_kwargs), num_classes=num_classes,
                       mean=float_list(mean, "--mean"), std=float_list(std, "--std"), no_normalize=no_normalize,
                       trust_pickle=trust_pickle, trust_code=trust_code, trust_program=trust_program)
