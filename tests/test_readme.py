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


DOCS = [README, README.parent / "docs/experiments.md", README.parent / "docs/results.md"]
MAKEFILE = README.parent / "Makefile"


def train_commands() -> list[str]:
    """Every `pyro-vae train` command of the README's and docs' shell blocks and of the
    Makefile, continuation lines joined, comments dropped; none that needs a file the
    repository does not hold (the placeholder base.toml) or resumes a run."""
    lines = []
    for path in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            lines += block.replace("\\\n", " ").splitlines()
    lines += MAKEFILE.read_text().replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        match = re.search(r"pyro-vae train ([^;&|]*)", line.split(" #")[0])
        if match and "--resume" not in match.group(1) and "base.toml" not in match.group(1).lower():
            commands.append(match.group(1).replace("$obj", "iwae").replace("$L", "gaussian-learned").strip())
    return commands


def test_documented_train_commands_pass_the_option_checks():
    """A command the README, the docs or `make figures` give is not refused by the checks
    `pyro-vae train` makes before anything runs (its options, its config file, and an option
    that would have no effect)."""
    import shlex

    from pyro_vae.cli import _apply_flags, build_parser
    from pyro_vae.config import Config

    commands = train_commands()
    assert len(commands) > 30 and any("--model ae" in c for c in commands)
    root = README.parent
    refused = []
    for command in commands:
        args = build_parser().parse_args(["train", *shlex.split(command)])
        if args.config:
            args.config = str(root / args.config)
        try:
            _apply_flags(Config.load(args.config) if args.config else Config(), args).validate()
        except Exception as error:  # noqa: BLE001 - each refusal is reported with its command
            refused.append(f"{command}: {error}")
    assert not refused, "\n".join(refused)
