"""Every number in docs/results.md that comes from a run is backed by the run's files.

The convention (also stated at the top of docs/results.md):

* A number quoted from a run is a Markdown link whose text is the number as printed and
  whose target is the JSON file it was read from, relative to docs/, with the JSON keys
  after ``#`` (comma-separated, one per number in the text, in order; a dotted key walks
  into nested objects and lists)::

      [**-89.81 ± 0.24**](../benchmarks/results/runs/bmnist-vae/loglik_k1000.json#log_likelihood_mean,log_likelihood_stderr)

  A number printed with ``%`` is compared with 100 times the JSON's value (a fraction).
* A run's directory is ``benchmarks/results/runs/NAME/`` and holds at least
  ``config.toml`` and ``metrics.csv`` besides the JSON files its rows link.
* Plain mentions of ``benchmarks/results/runs/NAME`` (wildcards and ``<placeholders>``
  allowed, e.g. ``fmnist-<likelihood>``) must exist too, each with ``config.toml`` and
  ``metrics.csv``. A log-likelihood table whose rows do not link their numbers must sit in
  a section (``##``) that names its run directories this way; linking each number is the
  stronger form, since only linked numbers are compared with their JSON.
* A link written in inline code (between backticks) is an example, not a claim, and is not checked.
* A line whose run files are not in the repository carries the marker
  ``run files missing`` and is exempt; it must not link a run JSON.

The quoted number must equal the JSON's value to the printed precision (half a unit in
the last printed digit).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results.md"
MISSING_MARKER = "run files missing"
RUN_FILES = ("config.toml", "metrics.csv")

LINK = re.compile(r"\[([^\]]+)\]\(([^)#\s]+\.json)#([^)\s]+)\)")
NUMBER = re.compile(r"[-+\u2212]?\d[\d,]*(?:\.\d+)?%?")
RUN_MENTION = re.compile(r"benchmarks/results/runs/([A-Za-z0-9_.*?\[\]<>-]+)")


def run_mentions(line: str) -> list[str]:
    """Glob patterns of the run directories ``line`` names (``<placeholder>`` -> ``*``)."""
    return [re.sub(r"<[^>]*>", "*", name) for name in RUN_MENTION.findall(line)]
EXAMPLE_LINK = re.compile(r"`[^`]*\]\([^`]*`")  # a link in inline code


def _lookup(payload, dotted: str):
    value = payload
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _matches(printed: str, value: float) -> bool:
    text = printed.replace("\u2212", "-").replace(",", "")
    if text.endswith("%"):
        text, value = text[:-1], 100.0 * value
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10 ** -decimals + 1e-9


def check_results_evidence(markdown: str, docs_dir: Path, repo: Path) -> list[str]:
    """Every problem with the evidence behind ``markdown`` (empty when all is backed)."""
    problems = []
    for line_no, line in enumerate(markdown.splitlines(), 1):
        where = f"docs/results.md:{line_no}"
        line = EXAMPLE_LINK.sub("", line)
        missing = MISSING_MARKER in line
        for text, target, keys in LINK.findall(line):
            path = (docs_dir / target).resolve()
            if missing and "results/runs/" in target:
                problems.append(f"{where}: marked '{MISSING_MARKER}' but links {target}")
                continue
            if not path.is_file():
                problems.append(f"{where}: {target} does not exist")
                continue
            runs = repo / "benchmarks" / "results" / "runs"
            if runs in path.parents:
                run_dir = runs / path.relative_to(runs).parts[0]
                for name in RUN_FILES:
                    if not (run_dir / name).is_file():
                        problems.append(f"{where}: run {run_dir.name} has no {name}")
            numbers, key_list = NUMBER.findall(text), keys.split(",")
            if len(numbers) != len(key_list):
                problems.append(f"{where}: link text {text!r} has {len(numbers)} numbers for keys {key_list}")
                continue
            payload = json.loads(path.read_text())
            for printed, key in zip(numbers, key_list):
                try:
                    value = float(_lookup(payload, key))
                except (KeyError, IndexError, ValueError, TypeError):
                    problems.append(f"{where}: {target} has no number at key {key!r}")
                    continue
                if not _matches(printed, value):
                    problems.append(f"{where}: quotes {printed} but {target}#{key} is {value!r}")
        if missing:
            continue
        for name in run_mentions(line):
            found = list((repo / "benchmarks" / "results" / "runs").glob(name))
            if not found:
                problems.append(f"{where}: benchmarks/results/runs/{name} is not in the repository")
            for run_dir in found:
                for file in RUN_FILES:
                    if not (run_dir / file).is_file():
                        problems.append(f"{where}: run {run_dir.name} has no {file}")
    return problems


def test_results_doc_is_backed_by_committed_run_files():
    assert check_results_evidence(RESULTS.read_text(), RESULTS.parent, REPO) == []


def test_readmes_headline_numbers_are_backed_by_committed_run_files():
    readme = (REPO / "README.md").read_text()
    assert LINK.search(readme), "README.md's results table links no run JSON"
    assert check_results_evidence(readme, REPO, REPO) == []


def test_every_results_table_row_is_linked_or_marked_missing():
    """A table row of a log-likelihood table (one naming 'log p(x)' in its header) links its
    numbers' JSON, says its run files are missing, or sits in a section that names its
    committed run directories."""
    lines = RESULTS.read_text().splitlines()
    sections, current = {}, ""
    for line in lines:  # sections that name their run directories in plain text
        current = line if line.startswith("## ") else current
        if run_mentions(line) and MISSING_MARKER not in line:
            sections[current] = True
    unbacked, header, current = [], "", ""
    for line_no, line in enumerate(lines, 1):
        current = line if line.startswith("## ") else current
        if not line.startswith("|"):
            header = ""
            continue
        if not header:
            header = line
            continue
        if set(line) <= set("|-: ") or "log p(x)" not in header:
            continue
        if not LINK.search(line) and MISSING_MARKER not in line and not sections.get(current):
            unbacked.append(f"docs/results.md:{line_no}: {line[:60]}")
    assert unbacked == []


@pytest.fixture
def fake_repo(tmp_path):
    run = tmp_path / "benchmarks" / "results" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.toml").write_text("[train]\n")
    (run / "metrics.csv").write_text("epoch\n1\n")
    (run / "loglik.json").write_text(json.dumps({"log_likelihood_mean": -89.8149, "log_likelihood_stderr": 0.2449,
                                                 "nested": {"rows": [{"acc": 0.68284}]}}))
    (tmp_path / "docs").mkdir()
    return tmp_path


def _check(repo: Path, markdown: str) -> list[str]:
    return check_results_evidence(markdown, repo / "docs", repo)


def test_checker_accepts_a_backed_row(fake_repo):
    link = "../benchmarks/results/runs/r1/loglik.json"
    doc = (f"| VAE | [**-89.81 ± 0.24**]({link}#log_likelihood_mean,log_likelihood_stderr) |\n"
           f"| M2 | [68.28%]({link}#nested.rows.0.acc) |\nfiles in benchmarks/results/runs/r*\n")
    assert _check(fake_repo, doc) == []


def test_checker_names_a_wrong_number_a_missing_file_and_a_missing_run_file(fake_repo):
    link = "../benchmarks/results/runs/r1/loglik.json"
    assert "quotes -89.83" in _check(fake_repo, f"[-89.83]({link}#log_likelihood_mean)")[0]
    assert "quotes -89.8" not in " ".join(_check(fake_repo, f"[-89.8]({link}#log_likelihood_mean)"))
    assert "does not exist" in _check(fake_repo, "[-1.0](../benchmarks/results/runs/r2/x.json#a)")[0]
    assert "no number at key" in _check(fake_repo, f"[-1.0]({link}#elbo)")[0]
    assert "2 numbers" in _check(fake_repo, f"[-89.81 ± 0.24]({link}#log_likelihood_mean)")[0]
    (fake_repo / "benchmarks/results/runs/r1/metrics.csv").unlink()
    assert "has no metrics.csv" in _check(fake_repo, f"[-89.81]({link}#log_likelihood_mean)")[0]
    assert "not in the repository" in _check(fake_repo, "see benchmarks/results/runs/bmnist-vae/")[0]
    assert _check(fake_repo, "e.g. `[-1.0](../benchmarks/results/runs/r2/x.json#a)`") == []
    assert "not in the repository" in _check(fake_repo, "see `benchmarks/results/runs/r2`")[0]
    assert _check(fake_repo, "files: `benchmarks/results/runs/r<n>/`") == ["docs/results.md:1: run r1 has no metrics.csv"]
    assert "not in the repository" in _check(fake_repo, "files: benchmarks/results/runs/q<n>/")[0]
    assert _check(fake_repo, f"see benchmarks/results/runs/bmnist-vae/ ({MISSING_MARKER})") == []
    assert "marked" in _check(fake_repo, f"{MISSING_MARKER} [-89.81]({link}#log_likelihood_mean)")[0]


def test_the_performance_page_is_what_make_bench_writes_from_its_results(tmp_path, monkeypatch):
    """docs/performance.md is written by benchmarks/report.py from benchmarks/results/*.json and
    benchmarks/performance_notes.md; two sessions' sections were written into the page alone, so
    `make bench` would have dropped them. The page must be the report's output, byte for byte."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("performance_report", REPO / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(REPO / "benchmarks" / "performance_notes.md", tmp_path / "benchmarks" / "performance_notes.md")
    monkeypatch.setattr(report, "ROOT", tmp_path)  # reads REPO's results (RESULTS), writes the page under tmp_path
    report.main()
    assert (tmp_path / "docs" / "performance.md").read_text() == (REPO / "docs" / "performance.md").read_text()
