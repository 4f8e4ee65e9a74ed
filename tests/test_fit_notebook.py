"""The analysis notebook runs top to bottom on the bundled data, from its own folder as Jupyter runs it."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a Jupyter kernel runs the whole notebook


def test_fit_sweep_notebook_executes(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(ROOT / "analysis" / "fit_sweep.ipynb", as_version=4)
    resources = {"metadata": {"path": str(ROOT / "analysis")}}  # where Jupyter starts its kernel
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources)
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "240 completed runs" in text and "chinchilla fit of 240 runs" in text
    tables = "".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "envelope" in tables and "held_out" in tables
    assert any("image/png" in o.get("data", {}) for o in outputs)
