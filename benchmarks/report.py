"""Write docs/performance.md from benchmarks/results/*.json (run after the benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _latest(*names):
    """The newest (by its recorded date) of the results saved under ``names``: a re-run saved
    under a pass's own name (``train_step-tenth``) supersedes the file it re-measures."""
    found = [r for r in map(_load, names) if r]
    return max(found, key=lambda r: r.get("date", "")) if found else None


def _machine(result) -> str:
    m = result["machine"]
    return (f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch thread(s), torch {m['torch']}, "
            f"pyro {m['pyro']}, Python {m['python']}; {result['date']}, commit {result.get('commit', '?')}")


def _heading(title: str, result: dict) -> list[str]:
    """A section's title, the command that made its figures and the machine (with its load
    average when the benchmark recorded one)."""
    load = result.get("load_average")
    machine = f"Machine: {_machine(result)}" + (f"; load average {', '.join(f'{v:.1f}' for v in load)}" if load else "")
    return [f"## {title}", "", f"Command: `{result['command']}`  ", machine, ""]


def main():
    lines = ["# Performance", "",
             "Made by `make bench` (`benchmarks/run.py`), which writes `benchmarks/results/*.json` and this page.",
             "Every ratio compares candidates timed alternately in one process (medians), so load on the shared",
             "machine hits them alike; absolute times on this 2-core machine are noisy.", ""]
    step = _latest("train_step", "train_step-tenth", "train_step-tenth-2")
    if step:
        lines += ["## Training step", "", f"Command: `{step['command']}`  ", f"Machine: {_machine(step)}", "",
                  "pyro-vae: the library's step (fast ELBO, fused Adam). pyro ELBO: Pyro's `Trace_ELBO`/"
                  "`TraceMeanField_ELBO` with the same fused Adam. Pyro SVI: `SVI` with `pyro.optim.Adam`. "
                  "PyTorch: a VAE written by hand in the benchmark with `torch.optim.Adam` (default), and with "
                  "the fused Adam. trace+replay: pyro-vae's objective read through `poutine.trace` and "
                  "`poutine.replay`, as before this session's third pass on #16 (where measured). Medians in ms of "
                  + ("the thread's CPU time (`time.thread_time`: wall time on this oversubscribed machine was about "
                     "10x CPU time)" if step.get("clock") == "cpu" else "wall time") + ".", "",
                  "| network | batch | KL | pyro-vae | trace+replay | pyro ELBO | Pyro SVI | PyTorch | PyTorch + fused Adam | "
                  "pyro-vae / PyTorch | pyro-vae / PyTorch + fused | trace+replay / PyTorch + fused | Pyro SVI / PyTorch |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in step["rows"]:
            ms = r["median_ms"]
            traced = ms.get("pyro_vae_traced")
            traced_ms = "" if traced is None else f"{traced:.2f}"
            traced_ratio = "" if traced is None else f"{traced / ms['pytorch_fused_adam']:.3f}"
            lines.append(f"| {r['network']} | {r['batch']} | {r['kl']} | {ms['pyro_vae']:.2f} | {traced_ms} | "
                         f"{ms['pyro_vae_pyro_elbo']:.2f} | {ms['pyro_svi']:.2f} | {ms['pytorch']:.2f} | "
                         f"{ms['pytorch_fused_adam']:.2f} | {r['ratio_vs_pytorch']:.3f} | "
                         f"**{r['ratio_vs_pytorch_fused_adam']:.3f}** | "
                         f"{traced_ratio} | "
                         f"{r['pyro_svi_ratio_vs_pytorch']:.3f} |")
        if step.get("counts_mlp_128"):
            c = step["counts_mlp_128"]
            lines += ["", "Per step of the MLP at batch 128, counts that do not depend on the machine's load "
                      "(aten ops from torch.profiler, Python function calls from sys.setprofile):", "",
                      "| candidate | aten ops | `copy_` | `_to_copy` | Python calls |", "|---|---|---|---|---|"]
            for name, label in (("pyro_vae", "pyro-vae"), ("pyro_vae_traced", "trace+replay"), ("pyro_vae_pyro_elbo", "pyro ELBO"),
                                ("pytorch_fused_adam", "PyTorch + fused Adam")):
                if name in c:
                    lines.append(f"| {label} | {c[name]['aten_ops']} | {c[name]['copy_']} | {c[name]['_to_copy']} | "
                                 f"{c[name]['python_calls']} |")
        if step.get("load_average"):
            lines += ["", f"Load average while it ran: {', '.join(f'{v:.1f}' for v in step['load_average'])}."]
        if step.get("epoch"):
            e = step["epoch"]
            lines += ["", f"Whole epoch of the `make demo` model on Fashion-MNIST ({e['examples']:,} images, batch 128, "
                      f"dynamic binarization): pyro-vae {e['median_s']['pyro_vae']:.2f} s, plain PyTorch "
                      f"{e['median_s']['pytorch']:.2f} s, ratio **{e['ratio']:.3f}**."]
        lines.append("")
    bound = _load("epoch_bound")
    if bound:
        lines += _heading("Epoch against its arithmetic lower bound", bound) + [
                  f"Binarized MNIST, {bound['examples']:,} images, batch {bound['batch']} ({bound['steps']} steps), "
                  "784-400-50 MLP. The bound: the step's GEMMs, elementwise passes, noise, batch of bytes made "
                  "floats and fused Adam, each timed alone, times the steps, at each piece's best of 30 runs and at "
                  "its median (the like-for-like bound on a loaded machine: the epochs are timed whole); "
                  "re-measured before every pair of epochs.", "",
                  "| GEMM GFLOP/s (best, median) | bound per step at best (GEMM + elementwise + data + Adam, ms) | "
                  "bound per epoch (s; best, median) | pyro-vae (s) | pyro-vae / bound (best, median) | "
                  "PyTorch + fused Adam (s) | PyTorch / bound (best, median) |", "|---|---|---|---|---|---|---|"]
        for r in bound["rows"]:
            b = r["bound"]
            if "bound_median_epoch_s" not in r:  # before the sixth pass on #16: the best-case bound alone
                lines.append(f"| {b['gemm_gflops']:.0f} | {1e3 * b['step_s']:.2f} ({1e3 * b['gemm_s']:.2f} + "
                             f"{1e3 * b['elementwise_s']:.2f} + {1e3 * b['adam_s']:.2f}) | {r['bound_epoch_s']:.2f} | "
                             f"{r['pyro_vae_s']:.2f} | **{r['pyro_vae_over_bound']:.2f}** | "
                             f"{r['pytorch_fused_adam_s']:.2f} | {r['pytorch_fused_adam_over_bound']:.2f} |")
                continue
            lines.append(f"| {b['gemm_gflops']:.0f}, {b['gemm_median_gflops']:.0f} | {1e3 * b['step_s']:.2f} "
                         f"({1e3 * b['gemm_s']:.2f} + {1e3 * b['elementwise_s']:.2f} + {1e3 * b['data_s']:.2f} + "
                         f"{1e3 * b['adam_s']:.2f}) | {r['bound_epoch_s']:.2f}, {r['bound_median_epoch_s']:.2f} | "
                         f"{r['pyro_vae_s']:.2f} | {r['pyro_vae_over_bound']:.2f}, **{r['pyro_vae_over_median_bound']:.2f}** | "
                         f"{r['pytorch_fused_adam_s']:.2f} | {r['pytorch_fused_adam_over_bound']:.2f}, "
                         f"{r['pytorch_fused_adam_over_median_bound']:.2f} |")
        lines.append("")
    proc = _load("process")
    if proc:
        lines += _heading("A whole short job", proc) + [
                  f"`pyro-vae train` ({proc['epochs']} epochs, binarized MNIST"
                  + (f", first {proc['train_limit']:,} training images" if proc.get("train_limit") else "")
                  + ", 784-400-50 MLP; it also writes checkpoints, metrics, the test ELBO and three figures) against "
                  "`benchmarks/handwritten_vae.py` (the same epochs, validation ELBO and checkpoint every epoch, "
                  "test ELBO; no figures), fresh processes alternated; and the imports alone.", "",
                  ("| process | runs (CPU s) | median (CPU s) | wall (s) | peak RSS (MiB) |"
                   if "wall_seconds" in proc["runs"]["handwritten"][0] else
                   "| process | runs (wall s) | median (wall s) | wall (s) | peak RSS (MiB) |"), "|---|---|---|---|---|"]
        for name, label in (("pyro_vae_cli", "`pyro-vae train`"),
                            ("pyro_vae_cli_no_figures", "`pyro-vae train --figures false`"),
                            ("handwritten", "hand-written script"),
                            ("import_pyro_vae_cli", "`import pyro_vae.cli`"), ("import_torch_pyro", "`import torch, pyro`")):
            if name not in proc["runs"]:  # --figures false: since the fifth pass on #16
                continue
            runs = proc["runs"][name]
            seconds = ", ".join(f"{r['seconds']:.1f}" for r in runs)
            wall = ", ".join(f"{r.get('wall_seconds', r['seconds']):.1f}" for r in runs)
            lines.append(f"| {label} | {seconds} | {proc['median_s'][name]:.1f} | {wall} | "
                         f"{max(r['peak_mib'] for r in runs):.0f} |")
        lines += ["", f"Ratio of medians **{proc['ratio']:.3f}**; pair by pair "
                  f"{', '.join(f'{r:.3f}' for r in proc['ratio_each_pair'])}."
                  + (f" With `--figures false` **{proc['no_figures_ratio']:.3f}**; pair by pair "
                     f"{', '.join(f'{r:.3f}' for r in proc['no_figures_ratio_each_pair'])}."
                     if "no_figures_ratio" in proc else ""), ""]
    est = _load("estimator")
    if est:
        lines += _heading("Held-out log-likelihood estimator", est) + [
                  "Throughput in examples x K per second, pyro-vae's `importance_log_likelihood` (Pyro traces) "
                  "against an independent hand-written vectorized PyTorch estimator of the same networks (784-400-50; "
                  "its own chunks of up to 16,384 decoded codes).", "",
                  "| network | K | examples | pyro-vae | hand-written | ratio | same draws differ by | page faults a call |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in est["rows"]:
            faults = r.get("page_faults_per_call")  # recorded since the fourth pass on #16
            lines.append(f"| {r['network']} | {r['k']} | {r['examples']} | {r['pyro_vae_samples_per_s']:,.0f} | "
                         f"{r['handwritten_samples_per_s']:,.0f} | **{r['ratio']:.3f}** | "
                         f"{r['max_abs_difference_same_draws']:.1e} nats | "
                         + (f"{faults['pyro_vae']:,.0f} vs {faults['handwritten']:,.0f}" if faults else "") + " |")
        lines.append("")
    soak = _load("soak")
    if soak:
        c, e = soak["cycles"], soak["evaluations"]
        lines += ["## Soak", "", f"Command: `{soak['command']}`  ", f"Machine: {_machine(soak)}", "",
                  f"- {c['cycles']} train-save-resume cycles: resident memory {c['rss_mib_start']:.0f} MiB (after "
                  f"20 cycles) -> {c['rss_mib_end']:.0f} MiB, {c['seconds']:.0f} s, run directory intact.",
                  f"- {e['evaluations']} evaluations ({e['valid']} valid, {e['refused']} invalid and refused): "
                  f"{e['rss_mib_start']:.0f} -> {e['rss_mib_end']:.0f} MiB, {e['seconds']:.0f} s.", ""]
    memory = _load("memory")
    if memory:
        lines += ["## Peak memory", "", f"Command: `{memory['command']}`  ", f"Machine: {_machine(memory)}; "
                  f"load average {', '.join(f'{v:.1f}' for v in memory.get('load_average', []))}", "",
                  "Peak resident memory of whole `pyro-vae evaluate` processes (each its own `ru_maxrss`, as "
                  "`/usr/bin/time -v` reports it), every run listed; spread = (max - min) / max.", "",
                  "| sources | command | runs (MiB) | worst (MiB) | spread |", "|---|---|---|---|---|"]
        before = _load("memory-main")
        for label, result in (("before (main)", before), ("this tree", memory),
                              ("this tree, 784-64-50 run", _load("memory-k5000")),
                              ("this tree, 784-64-50 run", _load("memory-k20000")),
                              ("main before the tenth pass, 784-64-50 run", _load("memory-k20000-ninth")),
                              ("tenth pass (no tensor kept per chunk), 784-64-50 run", _load("memory-tenth"))):
            for r in (result or {}).get("evaluate", []):
                lines.append(f"| {label} | `{r['command']}` | {', '.join(f'{v:.0f}' for v in r['peak_mib'])} | "
                             f"**{r['worst_mib']:.0f}** | {100 * r['spread']:.1f}% |")
        datasets = (_load("memory-k5000") or {}).get("datasets") or memory.get("datasets")
        if datasets:
            lines += ["", "Resident memory a loaded data set adds (fresh process, `load_dataset`, /proc/self/statm):", "",
                      "| data set | resident (MiB) | images as uint8 (MiB) | ratio |", "|---|---|---|---|"]
            for d in datasets:
                lines.append(f"| {d['dataset']} | {d['resident_mib']:.0f} | {d['image_mib_as_uint8']:.0f} | "
                             f"**{d['ratio']:.2f}** |")
        lines.append("")
    bern = _load("bernoulli")
    if bern:
        lines += ["## Bernoulli log-probability: two forms", "", f"Command: `{bern['command']}`  ",
                  f"Machine: {_machine(bern)}; load average "
                  f"{', '.join(f'{v:.1f}' for v in bern.get('load_average', []))}", "",
                  "`-softplus(l (1 - 2x))` against torch's `binary_cross_entropy_with_logits`, timed alternately "
                  "in one process (medians, ms).", "", "| rows x 784 | pass | softplus | BCE | softplus / BCE |",
                  "|---|---|---|---|---|"]
        for r in bern["rows"]:
            ms = r["median_ms"]
            lines.append(f"| {r['rows']} | {'forward + backward' if r['backward'] else 'forward'} | "
                         f"{ms['softplus']:.3f} | {ms['bce']:.3f} | {r['softplus_over_bce']:.3f} |")
        err = bern["max_abs_error_vs_float64"]
        lines += ["", f"Largest error per pixel against float64: softplus {err['softplus']:.1e}, BCE {err['bce']:.1e}.", ""]
    for name, what in (("eval_rich-runs", "trained runs' best checkpoints, static binarized-MNIST test images"),
                       ("eval_rich", "random parameters, random binary images")):
        rich = _load(name)
        if rich:
            lines += _heading(f"Evaluation of rich models (issue #19/#16): {what}", rich) + [
                f"Importance-sampled log p(x): this tree against commit {rich['base']} in one process, alternated, "
                "the same images and the same draws (each call seeded alike); medians of the thread's CPU seconds "
                "per call, one torch thread.", "",
                "| model | source | K | images | this tree (s) | base (s) | base / this tree | largest difference (nats) |",
                "|---|---|---|---|---|---|---|---|"]
            for r in rich["rows"]:
                med = r["median_cpu_s"]
                lines.append(f"| {r['model']} | {r['source']} | {r['k']} | {r['examples']} | {med['this_tree']:.2f} | "
                             f"{med['base']:.2f} | **{r['base_over_this_tree']:.2f}** | {r['max_abs_difference_nats']:.1e} |")
            lines.append("")
    notes = ROOT / "benchmarks" / "performance_notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    (ROOT / "docs" / "performance.md").write_text("\n".join(lines))
    print(ROOT / "docs" / "performance.md")


if __name__ == "__main__":
    main()
