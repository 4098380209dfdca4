"""The notebook tour (examples/tour.ipynb) runs top to bottom on small slices.

It is executed in a real Jupyter kernel (nbclient + ipykernel), as a reader would run it;
any error in any cell fails the test."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TOUR = Path(__file__).resolve().parents[1] / "examples" / "tour.ipynb"


def test_the_tour_runs_top_to_bottom_on_small_slices(
    shared_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = nbformat.read(TOUR, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook with its outputs stripped"
    )
    # The kernel inherits this process's environment: the size switch and the data.
    monkeypatch.setenv("AE_ANOMALY_TOUR", "small")
    monkeypatch.setenv("AE_ANOMALY_DATA", str(shared_data_dir))
    where = {"metadata": {"path": str(tmp_path)}}  # the kernel's working folder
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources=where)
    client.execute()
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "stream"
    )
    assert "size small" in printed
    assert "saved, loaded with identical scores, exported to detector.onnx" in printed
    assert "ONNX Runtime scores differ by at most" in printed
    figures = sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    )
    assert figures >= 6, f"the tour drew {figures} figures"
