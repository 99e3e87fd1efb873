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


RELIABILITY = README.parent / "docs/reliability.md"


def reliability_row(case_start: str) -> str:
    """The row of docs/reliability.md's tables whose case begins with ``case_start``."""
    rows = [line for line in RELIABILITY.read_text().splitlines() if line.startswith(f"| {case_start}")]
    assert len(rows) == 1, (case_start, rows)
    return rows[0].replace("\\|", "|")


def test_reliability_quotes_the_messages_the_commands_print(tmp_path, monkeypatch, capsys):
    """docs/reliability.md quoted `refusing to overwrite RUN/checkpoint_best.pt, a file of the run`
    (no such message exists), the Python function's sentence for `evaluate --k` on an autoencoder
    and the library's for several runs to a one-run figure; each quote is the CLI's own sentence."""
    from types import SimpleNamespace

    from pyro_vae.cli import _refuse_evaluation, main
    from pyro_vae.errors import PyroVAEError
    from pyro_vae.outputs import check_output
    from pyro_vae.plots import check_figure_output

    monkeypatch.chdir(tmp_path)
    run = Path("RUN")
    run.mkdir()
    for name in ("config.toml", "checkpoint_last.pt"):
        (run / name).write_text("")

    def message(call) -> str:
        try:
            call()
        except PyroVAEError as error:
            return str(error)
        raise AssertionError("not refused")

    row = reliability_row("an `-o` that is a file a run is read back from")
    assert message(lambda: check_output(run / "checkpoint_best.pt")) in row
    assert message(lambda: check_figure_output(run / "checkpoint_best.pt")).split(" .avif")[0] in row
    row = reliability_row("`evaluate RUN -o RUN/loglik.json` without `--k`")
    assert message(lambda: check_output(run / "loglik_examples.npz")) in row

    autoencoder = SimpleNamespace(config=SimpleNamespace(model=SimpleNamespace(model="ae")), run_dir=run,
                                  model=SimpleNamespace(has_marginal_likelihood=False))
    args = SimpleNamespace(k=100, label_fidelity=False, seed_given=False, limit=0, subset=None)
    assert message(lambda: _refuse_evaluation(args, autoencoder)) in reliability_row("`evaluate --k` on a plain autoencoder")

    other = Path("OTHER")
    other.mkdir()
    assert main(["plot", "RUN", "OTHER", "--kind", "samples", "-o", "s.png"]) == 2
    printed = capsys.readouterr().err.strip().removeprefix("pyro-vae: error: ")
    assert printed and printed in reliability_row("several runs to `plot` for a one-run figure")


def test_experiments_names_the_sweep_result_files_that_are_kept():
    """docs/experiments.md said benchmarks/results/fmnist-sweep/ holds each run's summary.json,
    metrics.csv, config.toml and loglik.json; it holds no run's files. Every file it says is
    there is there, and a `runs/` folder is named kept only if it exists."""
    text = (README.parent / "docs/experiments.md").read_text()
    paragraph = " ".join(text[text.index("Result files (no checkpoints)"):].split("\n\n")[0].split())
    kept = paragraph.split("holds", 1)[1].split(". ")[0]
    folder = README.parent / "benchmarks/results/fmnist-sweep"
    named = re.findall(r"`([\w.-]+\.(?:csv|json|md))`", kept)
    assert {"results.csv", "sweep.json"} <= set(named)
    assert [name for name in named if not (folder / name).is_file()] == []
    assert "summary.json" not in kept or (folder / "runs").is_dir()
