"""Every notebook runs top to bottom (nbclient), so none can rot, and shows what a reader
should see: each plotting cell has a PNG output, no import warning is printed, and the
numbers the text relies on hold. They train on Fashion-MNIST, so they need the data
(present in CI).

To keep ``make test`` fast each runs with smaller sizes (fewer training images, epochs,
test images) than a reader's: a cell with ``SMALL[name]`` is put after the notebook's cell
tagged "parameters" (papermill's convention), so every other cell runs as written. The
sizes are chosen so that the checks below still hold with a margin."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import FASHION_DIR, require_path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def numbers(pattern: str, text: str) -> list[tuple[float, ...]]:
    matches = re.findall(pattern, text)
    return [tuple(float(g) for g in ((m,) if isinstance(m, str) else m)) for m in matches]


def check_elbo_rises(text: str) -> None:
    rows = numbers(r"epoch (\d+): train ELBO (-?\d+\.\d+)", text)
    assert len(rows) >= 3 and rows[-1][1] > rows[0][1]


def check_elbo_parts(text: str) -> None:
    check_elbo_rises(text)
    # the validation ELBO with its standard error and kind (it was printed bare)
    assert re.search(r"ELBO -\d+\.\d ± \d+\.\d nats per image \(a lower bound on log p\(x\), a probability mass "
                     r"on binary data; ± standard error over \d+ validation images\)", text)


def check_likelihood_kinds(text: str) -> None:
    """Each model's log p(x) is printed with its kind: a mass on binary images, or a density on grey
    levels, which the caveat above says cannot be ranked against a mass (it was printed without)."""
    kinds = dict(re.findall(r"^(\S+)\s+binarize=.*\): (.+)$", text, re.MULTILINE))
    assert kinds == {"bernoulli": "probability mass on binary data", "continuous-bernoulli": "density (not comparable)",
                     "gaussian-learned": "density (not comparable)"}


def check_k_sweep(text: str) -> None:
    # the ELBO with its standard error and kind (it was printed bare)
    assert re.search(r"ELBO -\d+\.\d\d ± \d+\.\d\d \(closed-form KL; ± standard error over \d+ test images; all "
                     r"numbers nats per image, probability mass on binary data\)", text)
    rows = numbers(r"K=\s*(\d+): log p\(x\)\s+(-?\d+\.\d+)", text)
    assert [k for k, _ in rows] == [1, 10, 100, 1000]
    steps = [b - a for (_, a), (_, b) in zip(rows, rows[1:])]
    assert sum(steps) / len(steps) >= 0 and rows[-1][1] > rows[0][1]  # nondecreasing on average
    # The verdict the text is read with agrees with the printed gain and ESS.
    gain = numbers(r"from K=100 to 1000: (-?\d+\.\d+) nats", text)[0][0]
    share = numbers(r"\((\d+\.\d+)% of K\)", text)[0][0]
    converged = "verdict: converged" in text
    assert converged == (gain < 0.1 and share > 5.0)
    assert not converged  # as the text after it says of four short epochs of training


def check_autoencoder_versus_vae(text: str) -> None:
    rows = {kind: (recon, gen) for kind, recon, gen in re.findall(
        r"(ae|vae): reconstruction\s+(-?\d+\.\d+).*?generation\s+(-?\d+\.\d+)", text)}
    (ae_recon, ae_gen), (vae_recon, vae_gen) = ([float(v) for v in rows[k]] for k in ("ae", "vae"))
    assert vae_gen > ae_gen + 10          # the VAE generates better, by far
    # The printed verdicts, which the text asks the reader to read, agree with the numbers.
    assert f"reconstructs better here: {'ae' if ae_recon > vae_recon else 'vae'}" in text
    assert "generates better here: vae" in text


# Each notebook's sizes for the test (its parameters cell holds a reader's, several times larger).
SMALL = {
    "01_vae_from_first_principles": "TRAIN_IMAGES, EPOCHS, KL_DRAWS = 3_000, 3, 50",
    "02_swapping_likelihoods": "TRAIN_IMAGES, EPOCHS, TEST_IMAGES, K = 2_000, 2, 100, 50",
    "03_heldout_likelihood": "TRAIN_IMAGES, EPOCHS, TEST_IMAGES = 4_000, 3, 50",
    "04_latent_arithmetic_and_interpolation": "TRAIN_IMAGES, EPOCHS = 4_000, 3",
    "05_label_variants": "TRAIN_IMAGES, CVAE_EPOCHS, M2_EPOCHS, JUDGE_EPOCHS, M1_EPOCHS, M1M2_EPOCHS = 5_000, 6, 2, 2, 3, 3",
    "06_autoencoder_versus_vae": "TRAIN_IMAGES, EPOCHS, TEST_IMAGES, K = 3_000, 3, 200, 1000",
}


def with_small_sizes(notebook, name: str):
    """The notebook with ``SMALL[name]`` in a new cell after its one "parameters" cell."""
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    reader = {}
    exec(notebook.cells[tagged[0]].source, reader)
    small = {}
    exec(SMALL[name], small)
    # The override names only what the notebook defines, so a renamed size cannot go unshrunk.
    names = set(reader) - {"__builtins__"}
    assert set(small) - {"__builtins__"} == names, name
    assert all(small[k] <= reader[k] for k in names), name
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(SMALL[name]))
    return notebook


CHECKS = {"01_vae_from_first_principles": check_elbo_parts, "02_swapping_likelihoods": check_likelihood_kinds,
          "03_heldout_likelihood": check_k_sweep,
          "06_autoencoder_versus_vae": check_autoencoder_versus_vae}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6
    assert sorted(SMALL) == [path.stem for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_shows_its_figures(path, tmp_path):
    require_path(FASHION_DIR / "train-images-idx3-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    notebook = with_small_sizes(nbformat.read(path, as_version=4), path.stem)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in code for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    plotting = [cell for cell in code if "plt.show()" in cell.source]
    assert plotting, "every notebook draws at least one figure"
    for cell in plotting:
        assert any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])), cell.source[:80]
    assert not any("IProgress" in text_of(cell) for cell in code)
    if path.stem in CHECKS:
        CHECKS[path.stem]("\n".join(text_of(cell) for cell in code))
