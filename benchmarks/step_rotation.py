"""The MLP step at batch 128 against the fused-Adam PyTorch step, alternated two ways in one process:
the two candidates alone (60 steps each) and all six candidates of ``train_step.py`` (40 each); CPU time
of this thread, one torch thread. Prints pyro-vae / PyTorch + fused Adam for the Monte Carlo and the
analytic KL.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/step_rotation.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import alternate, median  # noqa: E402
from train_step import step_candidates  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    for analytic in (False, True):
        candidates = step_candidates("mlp", 128, analytic)
        two = {k: candidates[k] for k in ("pyro_vae", "pytorch_fused_adam")}
        t2 = alternate(two, 60, warmup=3, clock=time.thread_time)
        t6 = alternate(candidates, 40, warmup=3, clock=time.thread_time)
        r2 = median(t2["pyro_vae"]) / median(t2["pytorch_fused_adam"])
        r6 = median(t6["pyro_vae"]) / median(t6["pytorch_fused_adam"])
        print(f"analytic={analytic}: two alternated {r2:.3f} ({1e3 * median(t2['pyro_vae']):.2f} vs "
              f"{1e3 * median(t2['pytorch_fused_adam']):.2f} ms); six alternated {r6:.3f} "
              f"({1e3 * median(t6['pyro_vae']):.2f} vs {1e3 * median(t6['pytorch_fused_adam']):.2f} ms)", flush=True)


if __name__ == "__main__":
    main()
