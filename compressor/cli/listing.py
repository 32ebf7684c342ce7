"""`compressor list`: what is registered."""

from __future__ import annotations

from typing import Optional

import typer

from ..registry import REGISTRIES, get_registry
from ..reporting import stdout_console, table, to_json
from . import app
from .options import Json


@app.command("list")
def list_cmd(kind: Optional[str] = typer.Argument(None, help=f"One of: {', '.join(REGISTRIES)} (default: all)."),
             pattern: Optional[str] = typer.Option(None, "--pattern", "-p", help="Glob such as 'pgd*'."),
             json_out: bool = Json) -> None:
    """List registered models, datasets, attacks, pruners, transforms and exporters."""
    kinds = [get_registry(kind).kind] if kind else list(REGISTRIES)
    report = {k: [{"name": e.name, "description": e.description, "source": e.source}
                  for e in REGISTRIES[k].entries(pattern)] for k in kinds}
    if json_out:
        print(to_json(report))
        return
    console = stdout_console()
    for k in kinds:
        rows = [(e["name"], e["description"], e["source"]) for e in report[k]]
        extra = {"models": "  (also tv:<name> for any torchvision classifier)",
                 "datasets": "  (also npz:PATH)"}.get(k, "")
        console.print(table(f"{k}{extra}", ["name", "description", "source"], rows or [("-", "none registered yet", "")]))
