"""mutmut run, with changes for a time-boxed run on a loaded machine:
1. mutants run in a seeded random order (random.Random(f"20:{name}") per mutant) instead of fastest first, so
   whatever has finished when the run is stopped is a uniform random sample of all mutants;
2. the separate clean-test pass is skipped: the stats pass just ran the same selected tests
   on the unmutated code and mutmut stops there if any fails;
3. ``--stats-only``: generate the mutants and run the stats pass (which tests call which
   function), then stop before any mutant runs. Tests added to the selected files afterwards
   are traced incrementally by the next run (mutmut collects stats for new test names only),
   so the slow stats pass can start while the last tests are being written;
4. the stats pass also records, for every (function, test) pair, the fewest frames of our own
   code (``src/``) between the test and the function (``mutants/mutmut-depths.json``), the
   quantity mutmut's ``max_stack_depth`` cuts on, so the mapping of any depth can be read
   from one pass;
5. each mutant's tests run fastest first (mutmut sorts them so only in its plain fork runner; its
   fork server ran them in set order, so a killed mutant often paid a slow test before the fast
   one that fails);
6. the fork server imports ``torch._dynamo`` once (the first ``torch.optim.Adam`` imports it,
   1.8 CPU-s that every worker building an optimizer paid again), then freezes the garbage
   collector's heap (``gc.freeze``): pytest ends every run with ``gc.collect()`` calls that
   walked the whole inherited heap (torch, Pyro, every test module), 0.4 of the 0.7 CPU-s a
   worker took for a one-line test;
7. ``--drop-slower-than S``: a test whose stats-pass time exceeds S seconds is not run for a
   function's mutants when that function has a faster test in the selection (so no function
   loses all its tests); a mutant only such a slow test would kill then survives and is read.

Run in a copy of the worktree (``mutants/`` is mutmut's working directory)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/mutmut_random_order.py [--stats-only]
        [--drop-slower-than S] [--max-children N] [mutant names...]
"""
import gc
import json
import os
import random
import sys

import mutmut.__main__ as m
import mutmut.mutation.trampoline as trampoline
from mutmut.runners import harness
from mutmut.workers import isolation

_rank = {}
def _key(name):
    if name not in _rank:
        _rank[name] = random.Random(f"20:{name}").random()
    return _rank[name]

m.estimated_worst_case_time = _key
for cls in (isolation.ForkServerRunner, getattr(isolation, "SubprocessRunner", None)):
    if cls is not None and "run_clean_tests" in cls.__dict__:
        cls.run_clean_tests = lambda self, tests: 0


# --- 4. call depth of every (function, test) pair, recorded during the stats pass -------------
_depth = {}            # (mangled function name, test node id) -> fewest src frames seen
_record = trampoline.record_trampoline_hit


def _record_with_depth(name, caller=None):
    _record(name, caller=caller)
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    key = (name, test)
    best = _depth.get(key)
    if best == 0:
        return
    src = os.path.abspath("src") + os.sep      # cwd is mutants/ while tests run
    n, f = 0, sys._getframe(2)                 # skip this function and the trampoline
    while f is not None:
        fn = f.f_code.co_filename
        if "pytest" in fn:
            break
        if fn.startswith(src):
            n += 1
        f = f.f_back
    if best is None or n < best:
        _depth[key] = n


trampoline.record_trampoline_hit = _record_with_depth
_run_stats = harness.PytestRunner.run_stats


def _run_stats_and_save_depths(self, *, tests):
    code = _run_stats(self, tests=tests)
    path = os.path.join("mutants", "mutmut-depths.json")
    old = json.load(open(path)) if os.path.exists(path) else []
    json.dump(old + [[f, t, d] for (f, t), d in _depth.items()], open(path, "w"))
    return code


harness.PytestRunner.run_stats = _run_stats_and_save_depths


# --- 5.-7. at run time --------------------------------------------------------------------------
_drop_slower_than = float("inf")
_submit = isolation.ForkServerRunner.submit


def _submit_fastest_first(self, mutant_name, tests, cpu_time_limit, estimated_time):
    duration = m.state().duration_by_test
    fast = [t for t in tests if duration[t] <= _drop_slower_than]
    tests = sorted(fast or tests, key=lambda t: duration[t])
    return _submit(self, mutant_name, tests, cpu_time_limit, estimated_time)


isolation.ForkServerRunner.submit = _submit_fastest_first
_warm_up = harness.PytestRunner.warm_up


def _warm_up_with_dynamo(self):
    _warm_up(self)
    import torch
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])   # imports torch._dynamo
    gc.freeze()


harness.PytestRunner.warm_up = _warm_up_with_dynamo


def _stop_after_stats(*args, **kwargs):
    print("stats collected; stopping before the mutants (--stats-only)")
    sys.exit(0)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--stats-only" in args:
        args.remove("--stats-only")
        m.collect_source_file_mutation_data = _stop_after_stats
    if "--drop-slower-than" in args:
        i = args.index("--drop-slower-than")
        _drop_slower_than = float(args[i + 1])
        del args[i:i + 2]
    if "--max-children" not in args:
        args = ["--max-children", "2"] + args
    sys.argv = ["mutmut", "run"] + args
    m.cli()
