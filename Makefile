# pyro-vae: `make demo` trains a VAE on Fashion-MNIST; `make test` runs the test suite.
# Both create .venv and install the pinned CPU torch first (constraints.txt), then the package.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
FASHION_DIR := /usr/share/datasets/fashion-mnist
# One torch thread, passive waiting: on a busy 2-core machine two spinning threads run far slower.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test bench figures install data clean mutation

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST from Debian's package when it is missing and we are root with apt.
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ] || [ -n "$$PYRO_VAE_DATA" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null)); \
	else \
		echo "Fashion-MNIST not found: run 'sudo apt-get install dataset-fashion-mnist', or put the four"; \
		echo "IDX .gz files in a folder and set PYRO_VAE_DATA=that-folder (pyro-vae can also download them)."; \
	fi

demo: install data
	@rm -rf runs/demo
	@start=$$(date +%s); \
	$(VENV)/bin/pyro-vae train --config configs/demo.toml --run-dir runs/demo && \
	echo "demo finished in $$(( $$(date +%s) - start )) s; results in runs/demo (summary.json, metrics.csv)"

# Tests in parallel (pytest-xdist), one worker per core: a module whose tests share a trained
# fixture is one xdist_group, run by one worker, so the fixture trains once.
# TEST_WORKERS=0 runs them in this process, as plain `python -m pytest -q` does.
TEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

bench: install
	$(PY) benchmarks/run.py

# Mutation testing (mutmut) of the inference code, likelihoods, networks and data splits
# against the fast tests (benchmarks/mutmut_random_order.py: mutants in seeded random order,
# tests fastest first, the five statistical tests only where a function has no faster one;
# docs/testing.md). Niced; CPU-s / 2 is the time on a quiet 2-core machine. Results are
# cached in mutants/ (delete it to start over); `mutmut browse` shows survivors' diffs.
MUTATION_JOBS ?= 2
mutation: install
	$(PIP) install -q -c constraints.txt -e ".[test,mutation]"
	OMP_NUM_THREADS=1 nice -n 5 $(VENV)/bin/python benchmarks/mutmut_random_order.py --drop-slower-than 3 --max-children $(MUTATION_JOBS)
	$(VENV)/bin/mutmut results

# The figures in README.md: the demo run (20-D latent) and a 2-D latent run, both on Fashion-MNIST.
FIG := docs/figures
figures: install data
	@[ -f runs/demo/checkpoint_best.pt ] || $(MAKE) demo
	@[ -f runs/fashion-2d/checkpoint_best.pt ] || $(VENV)/bin/pyro-vae train --config configs/fashion-mnist-2d.toml --run-dir runs/fashion-2d --no-progress
	@mkdir -p $(FIG)
	$(VENV)/bin/pyro-vae plot runs/demo --kind samples -n 32 -o $(FIG)/samples.png
	$(VENV)/bin/pyro-vae plot runs/demo --kind reconstructions -n 16 -o $(FIG)/reconstructions.png
	$(VENV)/bin/pyro-vae plot runs/demo --kind interpolate --index-a 0 --index-b 2 -o $(FIG)/interpolation.png
	$(VENV)/bin/pyro-vae plot runs/demo --kind arithmetic --attribute Trouser -o $(FIG)/arithmetic.png
	$(VENV)/bin/pyro-vae plot runs/demo --kind prior-check -o $(FIG)/prior-check.png
	$(VENV)/bin/pyro-vae plot runs/demo --kind curves -o $(FIG)/curves.png
	$(VENV)/bin/pyro-vae plot runs/fashion-2d --kind latent -o $(FIG)/latent-2d.png
	$(VENV)/bin/pyro-vae plot runs/fashion-2d --kind manifold -o $(FIG)/manifold-2d.png
	@[ -f runs/fashion-2d-ae/checkpoint_best.pt ] || $(VENV)/bin/pyro-vae train --config configs/fashion-mnist-2d.toml --model ae --objective elbo --run-dir runs/fashion-2d-ae --no-progress
	$(VENV)/bin/pyro-vae plot runs/fashion-2d-ae runs/fashion-2d --kind compare -n 36 -o $(FIG)/ae-vs-vae.png

clean:
	rm -rf $(VENV) runs .pytest_cache
