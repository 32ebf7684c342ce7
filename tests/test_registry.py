import textwrap

import pytest

from compressor.errors import UnknownNameError
from compressor.registry import MODELS, REGISTRIES, Registry, get_registry
from tests.conftest import run_cli


def test_register_get_and_glob():
    reg = Registry("widgets")

    @reg.register("pgd-fast")
    def a():
        """Fast one."""

    @reg.register("pgd-slow", description="Slow one")
    def b():
        pass

    reg.add("fgsm", object(), description="single step")
    assert reg.get("pgd-fast") is a
    assert reg.names("pgd*") == ["pgd-fast", "pgd-slow"]
    assert [e.description for e in reg.entries("pgd*")] == ["Fast one.", "Slow one"]
    with pytest.raises(ValueError):
        reg.add("fgsm", object())


def test_typo_suggestion():
    with pytest.raises(UnknownNameError) as err:
        MODELS.get("resnet81")
    msg = str(err.value)
    assert "did you mean" in msg and "'resnet18'" in msg and "compressor list models" in msg


def test_unknown_kind_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'models'"):
        get_registry("modles")
    assert set(REGISTRIES) == {"models", "datasets", "attacks", "pruners", "transforms", "exporters", "runtimes"}


def _write_plugin(root, group="compressor.models"):
    (root / "toyplugin.py").write_text(textwrap.dedent('''
        """A third-party plugin."""
        import torch.nn as nn

        def toy(num_classes=10, in_chans=1, mean=(0.0,), std=(1.0,)):
            """Toy linear classifier from a plugin."""
            from compressor.models import Normalize
            return nn.Sequential(Normalize(mean, std), nn.Flatten(), nn.LazyLinear(num_classes))
    '''))
    dist = root / "toyplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\ntoy = toyplugin:toy\n")


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("models", group="compressor.models")
    assert "toy" in reg.names()
    entry = reg.entries("toy")[0]
    assert entry.source == "toyplugin" and entry.description == "Toy linear classifier from a plugin."


@pytest.mark.slow
def test_plugin_shows_in_cli_list(tmp_path):
    _write_plugin(tmp_path)
    res = run_cli("list", "models", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    import json

    names = {e["name"]: e["source"] for e in json.loads(res.stdout)["models"]}
    assert names["toy"] == "toyplugin" and names["cnn-small"] == "builtin"
