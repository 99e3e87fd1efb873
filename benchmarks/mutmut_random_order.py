"""mutmut run, with two changes for a time-boxed run on a loaded machine:
1. mutants run in a seeded random order (random.Random(f"20:{name}") per mutant) instead of fastest first, so
   whatever has finished when the run is stopped is a uniform random sample of all mutants;
2. the separate clean-test pass is skipped: the stats pass just ran the same selected tests
   on the unmutated code and mutmut stops there if any fails."""
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
if __name__ == "__main__":
    sys.argv = ["mutmut", "run", "--max-children", "2"]
    m.cli()
