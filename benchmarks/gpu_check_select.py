"""pytest plugin for gpu_check.py: keep only the tests that need a CUDA GPU (a ``skipif`` whose reason names CUDA).

Those are the tests that skip on a CPU machine; everything else is deselected. Load it with
``python -m pytest -p gpu_check_select`` with ``benchmarks/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import re

CUDA_REASON = re.compile(r"cuda", re.I)


def needs_cuda(item) -> bool:
    """Whether a collected test carries a skipif marker whose reason names CUDA."""
    return any(CUDA_REASON.search(str(m.kwargs.get("reason", ""))) for m in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config, items) -> None:
    keep = [i for i in items if needs_cuda(i)]
    dropped = [i for i in items if not needs_cuda(i)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
