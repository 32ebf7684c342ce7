"""Deployment exporters; each back-end registers once in `compressor.registry.EXPORTERS` and is picked by name.

Built-ins: ``onnx``, ``onnxruntime`` (ORT-optimised ONNX), ``aoti`` (torch.export + AOTInductor), ``tensorrt`` (optional extra, imported only when
used) and ``sparse-safetensors`` (compressed checkpoints). Third-party exporters register through the
``compressor.exporters`` entry-point group.
"""

from compressor.registry import EXPORTERS

register_exporter = EXPORTERS.register

from .base import Exporter, ExportResult  # noqa: E402
from .latency import measure_latency  # noqa: E402
from . import aoti, onnx, onnxruntime, sparse_safetensors, tensorrt  # noqa: E402,F401  (register on import; tensorrt imports lazily)
from . import latency_probe  # noqa: E402,F401  (registers the latency probes in RUNTIMES)
from .aoti import export_aoti  # noqa: E402
from .engines import open_runner  # noqa: E402
from .onnx import export_onnx  # noqa: E402
from .ort_session import make_session  # noqa: E402
from compressor.checkpoint import load_compressed  # noqa: E402  (the format lives in the core: compressor.storage)
from compressor.storage import save_compressed, storage_sizes  # noqa: E402


def get_exporter(name: str) -> Exporter:
    """The exporter registered as `name` (an instance), with a 'did you mean' for typos."""
    return EXPORTERS.get(name)()


__all__ = ["EXPORTERS", "ExportResult", "Exporter", "export_aoti", "export_onnx", "get_exporter", "load_compressed",
           "make_session", "measure_latency", "open_runner", "register_exporter", "save_compressed", "storage_sizes"]
