"""The README's Python blocks run as written (on Fashion-MNIST, present in CI), and say what
is so."""

import re
from pathlib import Path

from conftest import FASHION_DIR, require_path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch, capsys):
    require_path(FASHION_DIR / "train-images-idx3-ubyte.gz", "Fashion-MNIST (Debian's dataset-fashion-mnist)")
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    # What the comments claim: the objective's class, the files of the runs, numbers in nats.
    from pyro_vae.inference.objectives import ReparamELBO

    assert isinstance(namespace["elbo"], ReparamELBO) and namespace["elbo"].analytic_kl
    for run in ("runs/from-python", "runs/tutorial-style"):
        for name in ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.csv", "summary.json", "curves.png"):
            assert (tmp_path / run / name).is_file(), (run, name)
    assert (tmp_path / "runs/from-python/samples.png").is_file()
    assert -800 < namespace["result"].summary["test_elbo"] < 0
    assert -800 < namespace["estimate"].mean < 0 and namespace["estimate"].stderr > 0
    assert -800 < namespace["tutorial"].history[-1]["valid_elbo"] < 0
