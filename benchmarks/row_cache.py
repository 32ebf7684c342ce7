"""The finished rows of a benchmark grid: a folder with one JSON per row, the settings they were made with, and
claims that let several processes running the same command share the grid."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError
from compressor.io import atomic_write_text, process_alive
from compressor.reporting import to_json

# settings that change what a cached robust-pruning row means: a cache made with other values is refused
ROW_SETTINGS = ("dataset", "val_size", "schedule_options", "epochs_schedule", "dense", "arch", "mean", "std", "no_normalize", "eps", "train_n", "val_n", "eval_n",
                "data_seed", "epochs_dense", "epochs_weights", "epochs_search", "epochs_admm", "lr", "lr_search",
                "weight_decay", "batch_size", "steps", "width", "hidden", "seed", "apgd_t")


def row_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that change what a cached row means (a cache made with others is refused)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k in ROW_SETTINGS for v in [getattr(args, k)]}


class RowCache:
    """A folder of finished rows (one JSON each, written atomically) plus the settings they were made with."""

    def __init__(self, folder: Path, settings: dict[str, Any], started: str):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "settings.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            # a setting added after the cache was made matches while it is left off
            diff = [k for k in settings if meta["settings"].get(k, None if settings[k] else settings[k]) != settings[k]]
            if diff:
                raise CompressorError(f"--cache {folder} holds rows made with other settings ({', '.join(diff)}): use "
                                      "another --cache folder or the same settings")
            self.started = meta["started_utc"]
        else:
            atomic_write_text(meta_path, to_json({"settings": settings, "started_utc": started}) + "\n")
            self.started = started

    def get(self, key: str) -> dict[str, Any] | None:
        """The finished row `key`, or None."""
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, row: dict[str, Any]) -> None:
        """Store row `key` (atomically) and drop this process's claim on it."""
        atomic_write_text(self.folder / f"{key}.json", to_json(row) + "\n")
        self.folder.joinpath(f"{key}.claim").unlink(missing_ok=True)

    def claim(self, key: str) -> bool:
        """Reserve row `key` for this process (False: another live process runs it), so that several processes
        with the same command share one grid; a claim whose process has died is taken over."""
        path = self.folder / f"{key}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and (pid == os.getpid() or process_alive(pid)):
                    return pid == os.getpid()
                path.unlink(missing_ok=True)  # a dead process's claim
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return True
        return False


class MemoryCache(RowCache):
    """No cache folder: rows live for this run only."""

    def __init__(self, started: str):
        self.rows: dict[str, dict] = {}
        self.started = started
        self.folder = None

    def get(self, key):
        return self.rows.get(key)

    def put(self, key, row):
        self.rows[key] = row

    def claim(self, key):
        return True
