"""mutmut run, with changes for a time-boxed run on a loaded machine:
1. mutants run in a seeded random order (random.Random(f"20:{name}") per mutant) instead of fastest first, so
   whatever has finished when the run is stopped is a uniform random sample of all mutants;
2. the separate clean-test pass is skipped: the stats pass just ran the same selected tests
   on the unmutated code and mutmut stops there if any fails;
3. ``--stats-only``: generate the mutants and run the stats pass (which tests call which
   function), then stop before any mutant runs. Tests added to the selected files afterwards
   are traced incrementally by the next run (mutmut collects stats for new test names only),
   so the slow stats pass can start while the last tests are being written.

Run in a copy of the worktree (``mutants/`` is mutmut's working directory)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/mutmut_random_order.py [--stats-only]
"""
import random
import sys

import mutmut.__main__ as m
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


def _stop_after_stats(*args, **kwargs):
    print("stats collected; stopping before the mutants (--stats-only)")
    sys.exit(0)


if __name__ == "__main__":
    if "--stats-only" in sys.argv:
        m.collect_source_file_mutation_data = _stop_after_stats
    sys.argv = ["mutmut", "run", "--max-children", "2"]
    m.cli()
