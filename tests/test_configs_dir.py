"""Every config shipped in configs/ is valid, and says what it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from ae_anomaly.config import build_config, read_yaml

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_configs_are_shipped() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path) -> None:
    config = build_config(read_yaml(path), {})
    # Each file opens with a comment saying what it is for.
    assert path.read_text(encoding="utf-8").startswith("#")
    # A shipped config names its model, so no recipe fills anything in silently.
    assert "model" in read_yaml(path), path.name
    assert config.to_dict()["model"] == read_yaml(path)["model"]
