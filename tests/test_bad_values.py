"""Unbounded values (issue 18, item 7): each ends in one sentence, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ae_anomaly import AutoencoderDetector
from ae_anomaly.cli import cli
from ae_anomaly.config import read_yaml
from ae_anomaly.errors import UserError
from ae_anomaly.nn.models import build_model

FIXTURE = Path(__file__).parent / "fixtures" / "v1-conv-bn-mse"


def test_a_seed_beyond_32_bits_is_refused_on_the_command_line_and_in_the_api() -> None:
    result = CliRunner().invoke(cli, ["run", "--seed", "9223372036854775808"])
    assert result.exit_code == 2 and "seed" in result.output and "Traceback" not in result.output
    with pytest.raises(UserError, match="seed"):
        AutoencoderDetector(seed=2**63, epochs=1).fit(np.zeros((20, 8, 8), np.uint8))


@pytest.mark.parametrize("params", [{"device": 123}, {"seed": "a"}, {"model_args": "abc"}], ids=str)
def test_set_params_of_the_wrong_type_are_refused_at_fit(params: dict[str, object]) -> None:
    detector = AutoencoderDetector(epochs=1).set_params(**params)
    with pytest.raises(UserError, match="invalid detector parameter"):
        detector.fit(np.zeros((20, 8, 8), np.uint8))


def test_a_config_nested_100000_levels_deep_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match="nested too deeply"):
        read_yaml(tmp_path / "deep.yaml")


def test_a_detector_json_nested_100000_levels_deep_is_one_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes((FIXTURE / "weights.safetensors").read_bytes())
    (folder / "detector.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(UserError, match="nested too deeply"):
        AutoencoderDetector.load(folder, device="cpu")


def test_absurd_model_arguments_are_refused_by_size_before_any_memory_is_taken(
    tmp_path: Path,
) -> None:
    with pytest.raises(UserError, match="more than the limit"):
        build_model("conv-bn", (1, 28, 28), channels=[100_000, 100_000])
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes((FIXTURE / "weights.safetensors").read_bytes())
    meta = json.loads((FIXTURE / "detector.json").read_text())
    meta["params"]["model_args"] = {"channels": [100_000, 100_000]}
    meta["model_args"] = meta["params"]["model_args"]
    (folder / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="more than the limit"):
        AutoencoderDetector.load(folder, device="cpu")
