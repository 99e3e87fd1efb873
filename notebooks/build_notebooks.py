"""Writes the notebooks of this folder from the cells below (the source of truth).

    python notebooks/build_notebooks.py

Each notebook runs top to bottom in a minute or two on 2 CPU cores with small settings;
tests/test_notebooks.py executes every one of them. The sizes (training images, epochs, test
images, K) are in one cell tagged "parameters" (papermill's convention), right after the
imports; the test runs each notebook with smaller sizes in a cell it inserts after that one.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import math
from pyro_vae import Config  # first: pyro_vae's names import Pyro without tqdm's "IProgress not found" warning
import matplotlib.pyplot as plt
import pyro
import torch

torch.set_num_threads(1)   # one thread is fastest on a busy small machine
pyro.set_rng_seed(0)"""

NOTEBOOKS = {
"01_vae_from_first_principles": [
("md", """\
# The VAE from first principles

A variational autoencoder is two probabilistic programs:

* the **model** p(x, z) = p(z) p(x | z): draw a code z ~ N(0, I), decode it, draw the image
  x ~ Bernoulli(decoder(z)) pixel by pixel;
* the **guide** q(z | x) = N(loc(x), diag(scale(x)^2)): an encoder network that proposes codes
  for an image.

Training maximises the evidence lower bound

ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x),

the reconstruction term minus the price of the code. Here we write both programs in plain Pyro,
side by side, with the same site names, and train them with `SVI` and `Trace_ELBO`."""),
("code", SETUP),
("params", """\
TRAIN_IMAGES = 6_000   # Fashion-MNIST training images
EPOCHS = 4
KL_DRAWS = 200         # Monte Carlo draws of the KL per validation image"""),
("code", """\
from pyro_vae import load_dataset

data = load_dataset("fashion-mnist", binarize="dynamic", train_limit=TRAIN_IMAGES)
x_valid = data.valid.images[:1000].reshape(-1, 784)
print(data.train.images.shape, "training images, grey levels in [0, 1]; binarized per batch")"""),
("md", "## Model and guide, side by side"),
("code", """\
import pyro.distributions as dist
from torch import nn

LATENT = 16
decoder = nn.Sequential(nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 784))
encoder = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 2 * LATENT))

def model(x):                                   # p(x, z)
    pyro.module("decoder", decoder)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

def guide(x):                                   # q(z | x)
    pyro.module("encoder", encoder)
    loc, raw = encoder(x).chunk(2, -1)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))"""),
("md", "## Stochastic variational inference"),
("code", """\
from pyro.infer import SVI, Trace_ELBO

svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
images = data.train.images.reshape(-1, 784)
history = []
for epoch in range(EPOCHS):
    order = torch.randperm(len(images))
    total = 0.0
    for start in range(0, len(images), 128):
        x = torch.bernoulli(images[order[start:start + 128]])   # dynamic binarization
        total += svi.step(x)                                    # returns -ELBO summed over the batch
    history.append(-total / len(images))
    print(f"epoch {epoch + 1}: train ELBO {history[-1]:.1f} nats per image")
assert history[-1] > history[0] + 20, "training should raise the ELBO"
"""),
("md", """\
## The ELBO and its parts

`pyro_vae.elbo_terms` traces the guide, replays the model on its draws and splits the
one-sample ELBO of every image into reconstruction and KL. With `analytic_kl=True` the KL of
two Gaussians is computed in closed form; the Monte Carlo KL agrees in expectation."""),
("code", """\
from pyro_vae import elbo_terms

with torch.no_grad():
    exact = elbo_terms(model, guide, x_valid, analytic_kl=True)
    mc = torch.stack([elbo_terms(model, guide, x_valid).kl for _ in range(KL_DRAWS)]).mean(0)
print(f"reconstruction {exact.reconstruction.mean():.1f}, KL {exact.kl.mean():.2f}, "
      f"ELBO {exact.elbo.mean():.1f} ± {exact.elbo.std() / math.sqrt(len(x_valid)):.1f} nats per image "
      f"(a lower bound on log p(x), a probability mass on binary data; ± standard error over "
      f"{len(x_valid)} validation images)")
print(f"KL closed form {exact.kl.mean():.3f} vs Monte Carlo ({KL_DRAWS} draws) {mc.mean():.3f}")
assert abs(exact.kl.mean() - mc.mean()) < 0.1"""),
("md", "## What it learned: samples from the prior and reconstructions"),
("code", """\
from pyro_vae.plots import image_grid

with torch.no_grad():
    samples = torch.sigmoid(decoder(torch.randn(32, LATENT))).reshape(-1, 1, 28, 28)
    loc, _ = encoder(x_valid[:16]).chunk(2, -1)
    recon = torch.sigmoid(decoder(loc)).reshape(-1, 1, 28, 28)
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, grid, title in zip(axes, [samples, x_valid[:16].reshape(-1, 1, 28, 28), recon],
                           ["samples from p(z)", "validation images", "reconstructions"]):
    ax.imshow(image_grid(grid, 8)[..., 0], cmap="gray"); ax.set_title(title); ax.axis("off")
plt.show()"""),
("md", """\
The library packages exactly this: `pyro_vae.build_vae` returns the model and guide as
`PyroModule`s, and `pyro-vae train` runs the loop with checkpoints, metrics and figures."""),
],

"02_swapping_likelihoods": [
("md", """\
# Swapping likelihoods on the same data

The observation model p(x | z) is one name: `bernoulli` for 0/1 pixels, `continuous-bernoulli`
for grey levels in [0, 1], `gaussian` (fixed or learned scale) for real values. We train the same
network with three of them on Fashion-MNIST and compare samples and held-out log-likelihoods.

**Caveat.** A density is only comparable on the same data. The Bernoulli model scores *binarized*
images (a probability mass, log p <= 0), the other two score *grey-level* images (densities, which
can exceed 1, so log p can be positive). The numbers below measure each model on its own data;
they do not rank the likelihoods against each other."""),
("code", SETUP),
("params", """\
TRAIN_IMAGES = 10_000   # Fashion-MNIST training images
EPOCHS = 4
TEST_IMAGES, K = 300, 200   # log p(x) on the first TEST_IMAGES test images, K importance samples"""),
("code", """\
from pyro_vae import ModelConfig, build_vae, load_dataset, importance_log_likelihood, make_objective
from pyro_vae.inference.train import Trainer, TrainSettings

CHOICES = {"bernoulli": "dynamic", "continuous-bernoulli": "none", "gaussian-learned": "none"}
results = {}
for likelihood, binarize in CHOICES.items():
    pyro.set_rng_seed(0)
    data = load_dataset("fashion-mnist", binarize=binarize, train_limit=TRAIN_IMAGES)
    model, guide = build_vae(ModelConfig(latent_dim=16, hidden_dims=[256], likelihood=likelihood), data.image_shape)
    data.check_support(model.likelihood)
    Trainer(model, guide, make_objective("analytic-kl"), data, TrainSettings(epochs=EPOCHS), progress=False,
            log=lambda s: None).fit()
    test = data.test.images[:TEST_IMAGES]
    estimate = importance_log_likelihood(model, guide, test, k=K)
    results[likelihood] = (model, estimate)
    print(f"{likelihood:22s} binarize={binarize:8s} log p(x) = {estimate.mean:8.1f} ± {estimate.stderr:.1f} nats "
          f"(K={K}, {TEST_IMAGES} test images, ESS min {estimate.ess.min():.0f}): {estimate.kind}")"""),
("code", """\
from pyro_vae.plots import image_grid

fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
torch.manual_seed(1)
z = torch.randn(25, 16)
for ax, (name, (model, estimate)) in zip(axes, results.items()):
    with torch.no_grad():
        ax.imshow(image_grid(model.decode_mean(z), 5)[..., 0], cmap="gray")
    ax.set_title(f"{name}\\nlog p(x) {estimate.mean:.0f} nats on its own data"); ax.axis("off")
plt.show()"""),
("md", """\
The learned Gaussian scale is a parameter of the likelihood; a small value means the model
claims sharp pixels:"""),
("code", """\
sigma = results["gaussian-learned"][0].likelihood.scale().item()
print(f"learned sigma = {sigma:.3f}")
assert 0 < sigma < 0.5"""),
],

"03_heldout_likelihood": [
("md", """\
# Held-out likelihood: the ELBO versus importance sampling

The ELBO is a lower bound on log p(x). Importance sampling with K draws from the guide,

log p(x) ~= logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,

is a tighter bound that approaches log p(x) as K grows (K = 1 is the ELBO's estimator). The
effective sample size of the weights says how well the guide covers the posterior."""),
("code", SETUP),
("params", """\
TRAIN_IMAGES = 20_000   # Fashion-MNIST training images
EPOCHS = 4
TEST_IMAGES = 200      # the bounds are averaged over the first TEST_IMAGES test images"""),
("code", """\
from pyro_vae import ModelConfig, build_vae, load_dataset, importance_log_likelihood, make_objective, elbo_terms
from pyro_vae.inference.train import Trainer, TrainSettings

data = load_dataset("fashion-mnist", binarize="dynamic", train_limit=TRAIN_IMAGES)
model, guide = build_vae(ModelConfig(latent_dim=16, hidden_dims=[256]), data.image_shape)
Trainer(model, guide, make_objective("analytic-kl"), data, TrainSettings(epochs=EPOCHS), progress=False,
        log=print).fit()
test = data.test.images[:TEST_IMAGES]"""),
("code", """\
with torch.no_grad():
    elbos = elbo_terms(model, guide, test, analytic_kl=True).elbo
elbo = elbos.mean().item()
ks = [1, 10, 100, 1000]
estimates = {k: importance_log_likelihood(model, guide, test, k=k) for k in ks}
print(f"ELBO {elbo:.2f} ± {elbos.std() / math.sqrt(len(test)):.2f} (closed-form KL; ± standard error over "
      f"{len(test)} test images; all numbers nats per image, {estimates[1].kind})")
for k, e in estimates.items():
    print(f"K={k:5d}: log p(x) {e.mean:8.2f} ± {e.stderr:.2f}  ESS mean {e.ess.mean():7.1f}  min {e.ess.min():5.1f}  "
          f"({e.seconds:.1f} s)")
means = [estimates[k].mean for k in ks]
assert means[0] < means[-1] and elbo < means[-1]"""),
("code", """\
fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogx(ks, means, "o-", label="importance sampling, K draws")
ax.axhline(elbo, color="gray", ls="--", label="ELBO (closed-form KL)")
ax.set_xlabel("K"); ax.set_ylabel("nats per test image"); ax.legend(); ax.set_title("The bound tightens with K")
plt.show()"""),
("md", """\
How far from converged is the estimate? Two signs, printed below: how much the bound still
gains from K = 100 to K = 1000 (near 0 once K is large enough), and the mean effective sample
size of the weights as a fraction of K (a few percent or less means a handful of draws carry
the estimate, and more would still raise it)."""),
("code", """\
late_gain = estimates[1000].mean - estimates[100].mean
early_gain = estimates[10].mean - estimates[1].mean
ess_share = estimates[1000].ess.mean().item() / 1000
print(f"gain from K=1 to 10: {early_gain:.2f} nats; from K=100 to 1000: {late_gain:.2f} nats")
print(f"mean ESS at K=1000: {estimates[1000].ess.mean():.1f} ({100 * ess_share:.1f}% of K)")
if late_gain < 0.1 and ess_share > 0.05:
    print("verdict: converged to about a tenth of a nat")
else:
    print("verdict: not converged; log p(x) lies above the K=1000 estimate by an unknown amount")"""),
("md", """\
After four short epochs the guide is far from the posterior: the ESS is a small share of K and
the bound is still rising at K = 1000, so even the K = 1000 number is a lower bound with an
unknown gap, not log p(x) "to a fraction of a nat". A longer-trained guide and a larger K
narrow it: `pyro-vae evaluate RUN --k 5000` does this for a trained run, writes the mean, its
standard error over test images and the ESS (docs/results.md reports the ESS beside every
estimate)."""),
],

"04_latent_arithmetic_and_interpolation": [
("md", """\
# Latent arithmetic and interpolation

Codes of similar images lie close together, so straight lines and differences in latent space
mean something. An **attribute vector** is the mean code of images with an attribute minus the
mean code of those without; adding it to a code moves the decoded image towards the attribute
(the "smile vector" of the VAE courses). Here the attribute is a Fashion-MNIST class."""),
("code", SETUP),
("params", """\
TRAIN_IMAGES = 20_000   # Fashion-MNIST training images
EPOCHS = 4"""),
("code", """\
from pyro_vae import (ModelConfig, build_vae, load_dataset, make_objective, attribute_vector, apply_attribute,
                      interpolate_codes)
from pyro_vae.inference.train import Trainer, TrainSettings
from pyro_vae.plots import image_grid

data = load_dataset("fashion-mnist", binarize="dynamic", train_limit=TRAIN_IMAGES)
model, guide = build_vae(ModelConfig(latent_dim=16, hidden_dims=[256]), data.image_shape)
Trainer(model, guide, make_objective("analytic-kl"), data, TrainSettings(epochs=EPOCHS), progress=False,
        log=lambda s: None).fit()
test, labels = data.test.images[:3000], data.test.labels[:3000]
with torch.no_grad():
    codes = guide.encode(test)[0]"""),
("md", "## Interpolation: linear and spherical"),
("code", """\
a, b = codes[0], codes[1]
with torch.no_grad():
    rows = [model.decode_mean(interpolate_codes(a, b, 10, method)) for method in ("linear", "spherical")]
fig, axes = plt.subplots(2, 1, figsize=(10, 2.6))
for ax, row, name in zip(axes, rows, ("linear", "spherical")):
    ax.imshow(image_grid(row, 10)[..., 0], cmap="gray"); ax.set_ylabel(name); ax.set_xticks([]); ax.set_yticks([])
plt.show()
assert torch.allclose(interpolate_codes(a, b, 10, "spherical")[-1], b, atol=1e-5)"""),
("md", "## Attribute vector: towards 'Trouser'"),
("code", """\
trouser = data.class_names.index("Trouser")
vector = attribute_vector(codes, labels == trouser)
alphas = [-2, -1, 0, 1, 2]
examples = codes[labels != trouser][:4]
with torch.no_grad():
    grid = torch.cat([model.decode_mean(apply_attribute(code, vector, alphas)) for code in examples])
plt.figure(figsize=(5, 4)); plt.imshow(image_grid(grid, 5)[..., 0], cmap="gray"); plt.axis("off")
plt.title("code + alpha x (Trouser vector), alpha = -2 ... 2"); plt.show()
assert torch.equal(apply_attribute(examples[0], vector, [0])[0], examples[0])   # alpha = 0 is the code"""),
("md", """\
How far does the vector move codes? Project every code on it: trousers sit far along it."""),
("code", """\
direction = vector / vector.norm()
projection = codes @ direction
for c, name in enumerate(data.class_names):
    print(f"{name:12s} {projection[labels == c].mean():6.2f}")
assert projection[labels == trouser].mean() > projection[labels != trouser].mean() + 1"""),
],

"05_label_variants": [
("md", """\
# The label variants: conditional VAE and semi-supervised M2

**Conditional VAE** (Sohn et al. 2015): p(x | z, y) p(z | y), the label fed to the decoder and
the guide q(z | x, y). Fixing z and changing y should draw the same "style" as every class.

**M2** (Kingma et al. 2014): y ~ Categorical(uniform), z ~ N(0, I), x ~ p(x | z, y), with y
observed for the few labelled images and summed out exactly (parallel enumeration,
`TraceEnum_ELBO`) for the rest. Its guide holds a classifier q(y | x), trained by the bound and
an auxiliary cross-entropy on the labelled images.

Whether the label really controls the class is measured, not judged by eye: an independent
classifier of real images (the *judge*) names the class of images decoded with label y, and the
**label fidelity** is the share it assigns to y (`pyro-vae evaluate RUN --label-fidelity`)."""),
("code", SETUP),
("params", """\
TRAIN_IMAGES = 10_000   # Fashion-MNIST training images
CVAE_EPOCHS, M2_EPOCHS, JUDGE_EPOCHS = 8, 3, 3
M1_EPOCHS, M1M2_EPOCHS = 15, 20   # M1 (a VAE of the grey images), then M2 on its codes"""),
("code", """\
from pyro_vae import ModelConfig, build_vae, load_dataset, make_objective
from pyro_vae.data.datasets import balanced_label_subset
from pyro_vae.inference.fidelity import label_model, prior_fidelity, style_grid_fidelity
from pyro_vae.inference.judge import JudgeSettings, train_judge
from pyro_vae.inference.train import Trainer, TrainSettings
from pyro_vae.inference.semisupervised import SemiSupervisedTrainer, train_supervised_baseline
from pyro_vae.plots import image_grid

BETA = 16.0      # the KL weight on z that makes the CVAE's label obey on Fashion-MNIST (docs/results.md;
                 # there with 50,000 images and 10 epochs: with fewer, the label obeys less)
M2_BETA = 4.0    # M2's weight on the KL of z alone (`--beta`), measured in docs/results.md
data = load_dataset("fashion-mnist", binarize="dynamic", train_limit=TRAIN_IMAGES)
names = data.class_names
test = data.scored_split("test")   # binarized once with a fixed seed, as the models are scored
# The judge: a small conv net trained on the real grey-level training images, apart from every model
# (`evaluate --label-fidelity` trains the same net on all 50,000 images for 6 epochs and caches it;
# this quicker one is a less exact reader: compare its own test accuracy, printed below).
judge = train_judge(load_dataset("fashion-mnist", train_limit=TRAIN_IMAGES), JudgeSettings(epochs=JUDGE_EPOCHS))
print(f"judge: test accuracy on real images {judge.test_accuracy:.3f}")


def fidelity(model, guide):
    \"\"\"Label fidelity of 100 prior codes per label, and of the style grid's cells whose label
    is not the image's own (the codes of 300 test images decoded with the 9 other labels).\"\"\"
    generator = label_model(model, guide)
    prior = prior_fidelity(generator, judge.predict, per_class=100, seed=0)
    _, swapped = style_grid_fidelity(generator, judge.predict, test.images[:300], test.labels[:300])
    return prior.overall.value, swapped.value"""),
("md", """\
## Conditional VAE: the KL weight decides whether the label controls the class

With beta 1 the encoder puts the class into z as well (it helps reconstruction, and it costs
only a few nats of KL), the decoder learns to read it from z, and the label y only nudges the
image. Weighting the KL by beta makes every nat in z cost beta: the class, which y already
gives the decoder for free, is the first thing z drops. Same networks, same data, same seed:"""),
("code", """\
# The standard prior N(0, I): a learned p(z | y) lets z carry the class at no KL cost
# (docs/results.md, "Real handwritten digits").
cvaes, scores = {}, {}
for beta in (1.0, BETA):
    pyro.set_rng_seed(0)
    cvae, cguide = build_vae(ModelConfig(model="cvae", latent_dim=8, hidden_dims=[256]), data.image_shape,
                             num_classes=10)
    Trainer(cvae, cguide, make_objective("analytic-kl"), data, TrainSettings(epochs=CVAE_EPOCHS, beta=beta),
            progress=False).fit()
    cvaes[beta], scores[beta] = (cvae, cguide), fidelity(cvae, cguide)
    print(f"beta {beta:g}: label fidelity, prior samples {scores[beta][0]:.3f}, "
          f"swapped style-grid cells {scores[beta][1]:.3f}")
assert scores[BETA][0] > scores[1.0][0] + 0.3 and scores[BETA][1] > scores[1.0][1] + 0.3"""),
("code", """\
fig, axes = plt.subplots(1, 2, figsize=(10, 6))
for ax, (beta, (cvae, cguide)) in zip(axes, cvaes.items()):
    with torch.no_grad():
        codes = cguide.encode(test.images[:8], test.labels[:8])[0]
        rows = torch.cat([cvae.decode_mean(codes, torch.full((8,), c)) for c in range(10)])
    ax.imshow(image_grid(rows, 8)[..., 0], cmap="gray"); ax.axis("off")
    ax.set_title(f"beta {beta:g}: column = a test image's code, row = a class")
plt.show()"""),
("md", "## M2 with 100 labels against the same classifier trained on those labels alone"),
("code", """\
config = ModelConfig(latent_dim=16, hidden_dims=[256])
config.model = "m2"
labelled = balanced_label_subset(data.train.labels, 100, seed=0)
print("labels per class:", data.train.labels[labelled].bincount().tolist())
pyro.set_rng_seed(0)
m2, m2_guide = build_vae(config, data.image_shape, num_classes=10)
# alpha = 20,000 per labelled image with the labelled batch weighed naturally (the library's
# defaults; docs/results.md shows alpha = 50 leaves the classifier almost unsupervised).
# beta (`--beta`) weighs the KL of the style z alone, as for the CVAE, so that the decoder uses y.
trainer = SemiSupervisedTrainer(m2, m2_guide, data, labelled, TrainSettings(epochs=M2_EPOCHS, beta=M2_BETA),
                                alpha=20_000.0, progress=False, log=print)
trainer.fit()
pyro.set_rng_seed(0)
_, fresh = build_vae(config, data.image_shape, num_classes=10)
baseline = train_supervised_baseline(fresh.classifier, data, labelled, epochs=M2_EPOCHS, steps_per_epoch=trainer.steps_per_epoch())
best = max(trainer.state.history, key=lambda row: row["valid_accuracy"])
test_accuracy = trainer.test_accuracy()   # the best epoch by validation, scored on the test split once
difference = 100 * (test_accuracy - baseline["test_accuracy"])
print(f"M2 test accuracy {test_accuracy:.3f} (best validation epoch {best['epoch']}); "
      f"supervised-only {baseline['test_accuracy']:.3f}: M2 {'above' if difference > 0 else 'below'} its "
      f"baseline by {abs(difference):.1f} points")
m2_prior, m2_swapped = fidelity(m2, m2_guide)   # the best epoch's decoder, which test_accuracy() restored
print(f"M2 label fidelity: prior samples {m2_prior:.3f}, swapped style-grid cells {m2_swapped:.3f}")
assert test_accuracy > 0.3   # chance is 0.1"""),
("md", """\
## M1+M2: M2 on the codes of a VAE trained on every image

Kingma et al.'s stacked model: **M1**, a plain VAE, learns from all the images without labels;
M2 then learns from M1's codes instead of the pixels, with a Gaussian likelihood on the code
(one learned sigma per unit). M1 here reads the grey levels with the continuous Bernoulli
likelihood (a Bernoulli M1 of 0/1 draws keeps little beyond the silhouette). `code_dataset`
keeps M1's active units (Burda et al.'s criterion), standardizes them and swaps them in for the
images; with `code_scales` M2 draws a fresh code z_1 ~ q(z_1 | x) for every training batch, as
Kingma et al.'s code does (`--m1-codes sample`). The baseline is the same kind of MLP on the
pixels, trained on the same 100 labels. On the command line: `pyro-vae train --model vae
--binarize none --likelihood continuous-bernoulli ...`, then `pyro-vae train --model m1m2
--m1-run M1_RUN --labels 100 --m1-codes sample`."""),
("code", """\
from pyro_vae.inference.codes import code_dataset, stacked_label_model, training_code_scales
from pyro_vae.nn import classifier as pixel_classifier

grey = load_dataset("fashion-mnist", binarize="none", train_limit=TRAIN_IMAGES)   # the same images, grey
pyro.set_rng_seed(0)
m1, m1_guide = build_vae(ModelConfig(latent_dim=50, hidden_dims=[512, 256], likelihood="continuous-bernoulli"),
                         grey.image_shape)
Trainer(m1, m1_guide, make_objective("analytic-kl"), grey,
        TrainSettings(epochs=M1_EPOCHS, kl_warmup_epochs=max(1, M1_EPOCHS // 3)), progress=False).fit()
m1_guide.eval()
codes, scaler = code_dataset(m1_guide, grey)                  # images [N, 1, 28, 28] -> codes [N, 1, 1, D]
code_scales = training_code_scales(m1_guide, grey, scaler)    # q(z_1 | x)'s spreads, for drawn codes
print(f"M1: {int(scaler.active.sum())} active units of 50; codes {tuple(codes.train.images.shape)}")

stacked = ModelConfig(latent_dim=16, hidden_dims=[500])
stacked.model = "m1m2"
pyro.set_rng_seed(0)
m1m2, m1m2_guide = build_vae(stacked, codes.image_shape, num_classes=10)
stacked_trainer = SemiSupervisedTrainer(m1m2, m1m2_guide, codes, labelled, TrainSettings(epochs=M1M2_EPOCHS),
                                        alpha=20_000.0, code_scales=code_scales, progress=False)
stacked_trainer.fit()
stacked_accuracy = stacked_trainer.test_accuracy()   # its best epoch by validation, the test split once
pyro.set_rng_seed(0)
pixel_baseline = train_supervised_baseline(pixel_classifier(grey.image_shape, [500], 10), grey, labelled,
                                           epochs=M1M2_EPOCHS, steps_per_epoch=stacked_trainer.steps_per_epoch())
print(f"M1+M2 test accuracy {stacked_accuracy:.3f}; the 784-500 pixel classifier on the same 100 labels "
      f"{pixel_baseline['test_accuracy']:.3f}; M2 on the pixels above {test_accuracy:.3f}")
# M1+M2 as a generator: z_2 and y -> M2's mean code -> M1's decoder; the judge reads its images.
generator = stacked_label_model(m1, m1_guide, scaler, m1m2, m1m2_guide)
stacked_fidelity = prior_fidelity(generator, judge.predict, per_class=100, seed=0).overall.value
print(f"M1+M2 label fidelity of prior samples {stacked_fidelity:.3f}")
assert stacked_accuracy > 0.3   # chance is 0.1 (the fidelity needs the long runs: see below)"""),
("code", """\
with torch.no_grad():   # one row per class, the same eight z_2 draws in every row
    z2 = torch.randn(8, 16)
    rows = torch.cat([generator.decode(z2, torch.full((8,), c)) for c in range(10)])
plt.figure(figsize=(5, 6))
plt.imshow(image_grid(rows, 8)[..., 0], cmap="gray"); plt.axis("off")
plt.title("M1+M2: row = a class y, column = a style z_2")
plt.show()"""),
("md", """\
A few short epochs on 10,000 images decide nothing: M2 and its baseline land within a few
points of each other, and which comes out ahead (printed above) moves with the seed, and three
epochs are too few for M2's decoder to learn to use y. M1+M2 is no exception: its M2 gains on
the codes over hundreds of epochs, so after twenty it may well sit below the pixel classifier
(in our run at these sizes, 66.8% against 69.8%), though its decoder already obeys the label
(89% of prior samples). The full runs in docs/results.md
(section Labels, two seeds each, test figures of settings chosen on validation) measure:

* **the conditional VAE**: on real digits (mnist-t10k) beta 1 draws the label's class in 56% of
  prior samples, beta 4 in 97-98% (style grid 98.6-98.8%). On Fashion-MNIST, 10 epochs on
  10,000 images: beta 1 36-37%, beta 16 92-96%; beta 16 on all 50,000 images: 96.0% and 97.0%
  of prior samples, 98.2% and 99.0% of style-grid cells. The price is the density model: about
  17 nats of test ELBO on digits (beta 4), 31 on Fashion (beta 16).
* **M2**: with beta 1 its decoder ignores y (39-41% fidelity on real digits: z carries the
  class). The KL weight on z alone (`--beta 4`) lifts the fidelity to 98.0% and 99.8% on real
  digits, but only to 75-81% on Fashion-MNIST. The accuracy gain over the supervised-only
  baseline needs many epochs: on real digits at 100 labels it is +2.40 and +5.95 points after
  20 epochs, and **+8.10 and +13.30** after 150 (90.6% and 92.0%), where validation accuracy
  levels off. On Fashion-MNIST it stays small: +0.69 and +0.25 points after 12 epochs, and
  +1.11 and +2.62 after 150 epochs on 10,000 images. A larger weight does not help there: with
  beta 16 (one seed) M2 fell 3.1 points below its baseline at 74% fidelity, because its
  decoder sees q(y | x)'s guesses, right only 58-70% of the time, for all but 100 images.
* **a convolutional q(y | x)** (`--classifier-network conv`) in the same long M2 reaches 93.0% and
  94.3% on real digits, against 88.05% and 81.80% for the same conv classifier on the labels
  alone (+4.95 and +12.50).
* **the ADGM** (`--model adgm`, an auxiliary variable a in model and guide) trained as long ties
  M2 rather than passing it: 90.20% and 91.75% on real digits (+7.75 and +13.05 over the
  baseline), its decoder obeying the label in 95-98% of samples.
* **M1+M2** (`--model m1m2`) is the strongest: on real digits, M2 on the drawn codes of a
  grey-level continuous-Bernoulli M1 (150 epochs), 400 epochs, reaches **95.15% and 94.10%**,
  +12.80 and +15.25 points over the same-labels pixel classifier (82.35%, 78.85%), and on a
  convolutional M1 95.10% and **96.00%** (+12.75, +17.15). With M2's z_2 of 50 dimensions (Kingma
  et al.'s) and 800 epochs it reaches **97.60% and 96.10%** (+15.25, +17.25), its decoder obeying
  the label in 97-98% of prior samples. On Fashion-MNIST it gains +3.6 to +5.3 points at
  100 labels (72.9-74.3%), and under one point at 1,000 labels, where M1's codes with the
  classifier alone do as well.
* **Pyro's own example** `examples/vae/ss_vae_M2.py`, run unmodified on Fashion-MNIST with 100
  labels for 9 epochs, scores 64.75% and 61.98%; this library's M2 at the same 9 epochs 69.21%
  and 69.90% (MLP q(y | x)), 69.88% and 70.47% (conv), and M1+M2 72.74% and 73.03%; on a
  convolutional M1 72.93% and 74.23%, 10.2 points ahead of the example on average.

`pyro-vae train --config configs/fashion-mnist-m2.toml --labels 100 --beta 4` trains the real
M2 (README's "Semi-supervised" section gives the M1+M2 commands), `pyro-vae evaluate RUN --label-fidelity` measures its fidelity, and `pyro-vae plot RUN --kind
curves` draws its accuracy by epoch."""),
],

"06_autoencoder_versus_vae": [
("md", """\
# Why an autoencoder is not a generative model

A plain **autoencoder** learns a code z = f(x) and a decoder that reconstructs x from it. Written
as a Pyro program (`--model ae`) it is the VAE's model with no prior on z and a guide that is a
point mass, `dist.Delta(f(x))`: its loss is the reconstruction term alone. The **VAE** adds the
prior N(0, I) and a spread-out guide, paying a KL term to keep the codes near the prior.

We train both with the same networks on Fashion-MNIST with a 2-D code, then look at three
things: where each puts the codes, what each decoder makes of codes drawn from N(0, I), and two
numbers: how well each reconstructs, and how likely test images are under each decoder when its
codes are drawn from N(0, I) (which is how one samples)."""),
("code", SETUP),
("params", """\
TRAIN_IMAGES = 10_000   # Fashion-MNIST training images
EPOCHS = 5
TEST_IMAGES, K = 500, 2000   # the two numbers on the first TEST_IMAGES test images; K codes from N(0, I)"""),
("code", """\
from pyro_vae import ModelConfig, build_vae, fit, load_dataset
from pyro_vae.inference.reconstruction import reconstruction_log_likelihood
from pyro_vae.plots import PRIOR_95_RADIUS, image_grid

data = load_dataset("fashion-mnist", binarize="dynamic", train_limit=TRAIN_IMAGES)
trained = {}
for kind in ("ae", "vae"):
    pyro.set_rng_seed(0)
    model, guide = build_vae(ModelConfig(model=kind, latent_dim=2, hidden_dims=[256]), data.image_shape)
    print(kind)
    # same loop as pyro-vae train; the autoencoder has no KL to take in closed form, so its objective is
    # the one-sample "elbo" (its reconstruction term alone), the VAE's the ELBO with the KL in closed form
    fit(model, guide, data, objective="elbo" if kind == "ae" else "analytic-kl", epochs=EPOCHS, log=print)
    trained[kind] = (model, guide)"""),
("md", "## The codes, and samples from N(0, I) through each decoder"),
("code", """\
test, labels = data.test.images[:3000], data.test.labels[:3000]
z = torch.randn(36, 2, generator=torch.Generator().manual_seed(1))     # the same draws for both
fig, axes = plt.subplots(2, 2, figsize=(11, 10.5))
with torch.no_grad():
    for col, (kind, (model, guide)) in enumerate(trained.items()):
        codes = guide.encode(test)[0]
        ax = axes[0][col]
        for c, name in enumerate(data.class_names):
            ax.scatter(*codes[labels == c].T, s=2, alpha=0.5, label=name)
        ax.add_patch(plt.Circle((0, 0), PRIOR_95_RADIUS, fill=False, ls="--", color="black"))
        ax.set_title(f"{kind}: codes of 3,000 test images (dashed: 95% of N(0, I))")
        axes[1][col].imshow(image_grid(model.decode_mean(z), 6)[..., 0], cmap="gray")
        axes[1][col].set_title(f"{kind}: decoded z ~ N(0, I)"); axes[1][col].axis("off")
axes[0][1].legend(markerscale=5, fontsize=7)
plt.show()"""),
("md", """\
The autoencoder's codes sit wherever training put them, at their own scale, in clusters with
gaps; nothing asks them to fill N(0, I), so most prior draws land off or between the clusters
and decode to blurs or to a few repeated shapes. The VAE's KL term packs the codes into the
prior's disc, so every draw from N(0, I) decodes to something like a garment."""),
("md", """\
## Two numbers: reconstruction and generation

* **reconstruction**: log p(x | z = code(x)), the decoder's likelihood of a test image at its
  own code (nats per image; higher is better);
* **generation**: log (1/K) sum_k p(x | z_k) with z_k ~ N(0, I), the log-likelihood of a test
  image under the decoder *with codes drawn as one samples them* (K = 2,000 draws cover a 2-D
  code well). For the VAE this is its log p(x); the autoencoder has no p(z), so this is what
  its decoder is worth as a sampler."""),
("code", """\
from pyro_vae.inference.reconstruction import sampled_code_log_likelihood   # log (1/K) sum_k p(x | z_k)

x = data.test.images[:TEST_IMAGES]
numbers = {}
with torch.no_grad():
    for kind, (model, guide) in trained.items():
        recon = reconstruction_log_likelihood(model, guide, x)
        sampled = sampled_code_log_likelihood(model, x, k=K)
        numbers[kind] = (recon.mean().item(), sampled.mean().item())
        print(f"{kind}: reconstruction {recon.mean():8.1f} ± {recon.std() / math.sqrt(len(x)):.1f}   "
              f"generation {sampled.mean():8.1f} ± {sampled.std() / math.sqrt(len(x)):.1f} nats per image "
              f"({len(x)} test images, ± standard error)")
gap = numbers["ae"][0] - numbers["vae"][0]
print(f"reconstructs better here: {'ae' if gap > 0 else 'vae'} (by {abs(gap):.1f} nats per image)")
print(f"generates better here: {'ae' if numbers['ae'][1] > numbers['vae'][1] else 'vae'} "
      f"(by {abs(numbers['ae'][1] - numbers['vae'][1]):.1f} nats per image)")
assert numbers["vae"][1] > numbers["ae"][1], "the VAE should generate better"
"""),
("md", """\
The VAE generates far better: its decoder was trained on codes spread like N(0, I), while most
draws from N(0, I) fall where the autoencoder's decoder never saw a code.

Reconstruction is closer than the courses suggest. The autoencoder's whole objective is the
reconstruction term and its code is not blurred by the guide's noise, so with enough training
it reconstructs better: in the README's 10-epoch runs on all 50,000 images it scores -251.6
nats per test image at its code against the VAE's -253.1. In short runs like these the VAE,
whose noisy codes smooth what the decoder must learn, can still be ahead: read the printed
line. Either way a 2-D code carries little; the large difference is in generation.
The same figure from trained runs: `pyro-vae plot RUN_AE RUN_VAE --kind compare -o compare.png`."""),
],
}


def build():
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook()
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        notebook.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
        for cell, (kind, _) in zip(notebook.cells, cells):
            if kind == "params":  # papermill's convention: the cell a runner may override
                cell.metadata["tags"] = ["parameters"]
        nbformat.write(notebook, HERE / f"{name}.ipynb")
        print(HERE / f"{name}.ipynb")


if __name__ == "__main__":
    build()
