"""Deployment exporters; each back-end registers once in `compressor.registry.EXPORTERS` and is picked by name.

Third-party exporters register through the ``compressor.exporters`` entry-point group.
"""

from compressor.registry import EXPORTERS

register_exporter = EXPORTERS.register

__all__ = ["EXPORTERS", "register_exporter"]
