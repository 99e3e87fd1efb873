"""`make bench`: every benchmark, one after another, then docs/performance.md."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
           PYTHONPATH=str(HERE.parent / "src"))
for script in ("train_step.py", "estimator.py", "soak.py", "fault_injection.py", "image_folder.py", "memory.py",
               "bernoulli.py", "eval_rich.py", "report.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, script], cwd=HERE, env=env, check=True)
