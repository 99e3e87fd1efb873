"""Every notebook runs top to bottom (nbclient), so none can rot. They train on Fashion-MNIST,
so they need the data (present in CI)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import FASHION_DIR, require_path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    require_path(FASHION_DIR / "train-images-idx3-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
