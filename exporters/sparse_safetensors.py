"""The ``sparse-safetensors`` exporter: a pruned checkpoint in the core's compressed format (`compressor.storage`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from compressor.checkpoint import Checkpoint, load_compressed
from compressor.errors import CompressorError
from compressor.folding import prepare_model
from compressor.io import atomic_write, check_output
from compressor.storage import SUFFIX, encode, same_values, storage_sizes

from . import register_exporter
from .base import Exporter, ExportResult, file_bytes


@register_exporter()
class SparseSafetensorsExporter(Exporter):
    """Compressed checkpoint: safetensors, sparse weights as values + bitmask, metadata kept; exact, no pickle."""

    name = "sparse-safetensors"
    suffixes = (SUFFIX,)
    precisions = ("fp32",)
    devices = ("cpu", "cuda")

    def export(self, model, path, *, input_shape, precision="fp32", force=False, checkpoint: Checkpoint | None = None,
               **options: Any) -> ExportResult:
        # the weights are checked exactly, so the batch, device and parity inputs (in `options`) play no part
        t0 = time.perf_counter()
        if checkpoint is None:
            raise CompressorError("`format` sparse-safetensors needs a compressor checkpoint (architecture and "
                                  "metadata), not a .pt2 program or a pickled module: save one with compressor train, "
                                  "or pass a state dict with `arch`")
        path = check_output(path, force)
        ref = prepare_model(model).state_dict()
        data = encode(ref, checkpoint)

        def verify(tmp: Path) -> None:  # exactness, on the rebuilt model's weights, before anything is replaced
            # the architecture is the one `model` was built from (the caller already allowed its import path)
            back = load_compressed(tmp, arch=checkpoint.arch).model.state_dict()
            bad = [k for k in ref if k not in back or not same_values(ref[k], back[k])]
            if bad:
                raise CompressorError(f"{path} does not round-trip: {len(bad)} tensors differ (e.g. {bad[0]})")

        atomic_write(path, lambda tmp: tmp.write_bytes(data), verify)
        return ExportResult(path=str(path), format=self.name, precision=precision, file_bytes=file_bytes(path),
                            max_abs_diff=0.0, tolerance=0.0, parity_inputs="weights (exact)",
                            seconds=time.perf_counter() - t0, details=storage_sizes(ref))
