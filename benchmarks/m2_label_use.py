"""Does M2's decoder use its label? Two numbers for a trained M2 run (a diagnostic, not a test).

* label share: for codes z ~ N(0, I), the share of the variance of the decoded mean
  E[x | z, y] (over z and y, summed over pixels) that y explains: Var_y(E_z[.]) / Var_{z,y}.
  0 when the decoder ignores y (the style grid's rows identical).
* judged fidelity: an independent MLP classifier (784-256-10, trained here on every
  training label of the data set, its test accuracy printed) judges the decoded means of
  100 prior codes per label; the share classified as the label they were decoded with.

    python benchmarks/m2_label_use.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn import functional as F

from pyro_vae.runs import open_run

JUDGES = Path.home() / "pyro-vae-runs" / "labels-m2"


def judge(dataset, name: str) -> torch.nn.Module:
    path = JUDGES / f"judge-{name}.pt"
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    if path.exists():
        net.load_state_dict(torch.load(path))
        return net.eval()
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = dataset.train.images, dataset.train.labels
    for _ in range(8):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(dataset.test.images).argmax(-1) == dataset.test.labels).float().mean().item()
    print(f"judge for {name}: test accuracy {100 * acc:.2f}%")
    JUDGES.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net


@torch.no_grad()
def label_use(model, decode, n: int = 100, classes: int = 10, seed: int = 0):
    """Decoded means ``[classes, n, ...]`` of the same n prior codes under every label,
    their label share, and the labels' grid."""
    torch.manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n)
    z = model.sample_prior(y[:n]).repeat(classes, 1)
    means = decode(z, y).reshape(classes, n, -1)
    share = (means.mean(1, keepdim=True) - means.mean((0, 1))).pow(2).sum(-1).mean() / \
        (means - means.mean((0, 1))).pow(2).sum(-1).mean()
    return means, share.item(), y


def main(paths):
    for path in paths:
        run = open_run(Path(path))
        dataset = run.dataset()
        net = judge(dataset, run.config.data.dataset)
        means, share, y = label_use(run.model, run.model.decode_mean)
        with torch.no_grad():
            said = net(means.reshape(-1, 1, 28, 28)).argmax(-1)
        per_class = [(said[y == c] == c).float().mean().item() for c in range(10)]
        print(f"{path}: label share of the decoded variance {share:.3f}; judged fidelity "
              f"{100 * (said == y).float().mean().item():.1f}% (per class {[round(100 * p) for p in per_class]})")


if __name__ == "__main__":
    main(sys.argv[1:])
