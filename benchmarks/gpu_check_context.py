"""What both processes of the GPU check share (gpu_check.py): where the CIFAR-10 slice lives and how it is cut,
atomic JSON writes, and the `PartContext` a part measures through."""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CARRY = REPO / ".gpu-carry"
SLICE = CARRY / "cifar10_slice.npz"
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10_test.npz"
# the CIFAR-10 slice: the official test order, a fixed first part to fine-tune on, a disjoint held-out part
SLICE_TRAIN = (0, 5000)
SLICE_TEST = (9000, 10000)
EPS = 8 / 255


def make_slice(src: Path, dst: Path, train: tuple[int, int] = SLICE_TRAIN, test: tuple[int, int] = SLICE_TEST) -> dict:
    """Write the CIFAR-10 slice: x_train/y_train = src[train], x_test/y_test = src[test] (disjoint, official order)."""
    import numpy as np

    if not (train[1] <= test[0] or test[1] <= train[0]):
        raise ValueError(f"the fine-tuning part {train} and the held-out part {test} overlap")
    with np.load(src, allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.npz")
    np.savez_compressed(tmp, x_train=x[train[0]:train[1]], y_train=y[train[0]:train[1]],
                        x_test=x[test[0]:test[1]], y_test=y[test[0]:test[1]])
    os.replace(tmp, dst)
    return {"source": str(src), "train_indices": list(train), "test_indices": list(test), "bytes": dst.stat().st_size}


def tiny_slice(src: Path, dst: Path, train_n: int = 96, test_n: int = 64) -> Path:
    """For a dry run: the first images of each part of the slice `src` (or of ../shared's test set) in `dst`."""
    import numpy as np

    if src.is_file():
        with np.load(src, allow_pickle=False) as d:
            parts = {k: d[k][:train_n if k.endswith("train") else test_n]
                     for k in ("x_train", "y_train", "x_test", "y_test")}
        np.savez_compressed(dst, **parts)
    elif SHARED_CIFAR.is_file():
        make_slice(SHARED_CIFAR, dst, (SLICE_TRAIN[0], SLICE_TRAIN[0] + train_n), (SLICE_TEST[0], SLICE_TEST[0] + test_n))
    return dst


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def json_safe(obj: Any) -> Any:
    """`obj` as plain JSON values (the library's `jsonable`, or str() when the library does not import)."""
    try:
        from compressor.reporting import jsonable

        return jsonable(obj)
    except Exception:  # the library itself may be what failed to import
        return json.loads(json.dumps(obj, default=str))


def error_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


class PartContext:
    """What a part sees: device, sizes, deadline, a work folder, and `save` that persists results at once."""

    def __init__(self, name: str, json_path: Path, deadline: float, dry: bool, work: Path, data: Path | None,
                 device: str):
        import torch

        self.name, self.json_path, self.deadline, self.dry, self.work, self.data = name, json_path, deadline, dry, \
            work, data
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.cuda = self.device.type == "cuda"
        self.result: dict[str, Any] = {}
        if dry:  # one thread: a second one stalls on every op whenever another process holds a core
            torch.set_num_threads(1)

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self, key: str, value: Any) -> None:
        self.result[key] = value
        write_text(self.json_path, json.dumps(json_safe(self.result), indent=1))

    def log(self, msg: str) -> None:
        print(f"[{self.name} {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def sync(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)

    def guarded(self, key: str, fn: Callable[[], Any], need_s: float = 0.0) -> Any:
        """Run one step of a part; its failure (or too little time) is recorded under `key`, not raised."""
        if self.left() < need_s:
            self.save(key, {"skipped": f"not enough time left ({self.left():.0f} s < {need_s:.0f} s)"})
            return None
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # one sub-measurement failing must not lose the others
            self.log(f"{key} failed: {error_line(exc)}")
            self.save(key, {"error": error_line(exc), "traceback": traceback.format_exc(limit=6)[-2000:],
                            "seconds": time.perf_counter() - t0})
            return None
        if isinstance(value, dict):
            value = {**value, "seconds": time.perf_counter() - t0}
        self.save(key, value)
        return value


def load_slice(ctx: PartContext):
    """The CIFAR-10 slice as a DataBundle (train/val/test), or None when it is not there."""
    from compressor.data import load_dataset

    if ctx.data is None or not ctx.data.is_file():
        return None
    return load_dataset(f"npz:{ctx.data}")
