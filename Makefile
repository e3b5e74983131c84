# gan_lightning — common tasks. `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: install train train-paper test test-fast lint tensorboard sweep bench bench-gpu bench-mnist100 bench-generators reference evaluate sample analyze clean
# torch/torchvision pinned to the builds that install offline on the reference machine; override freely.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1


# uv installs the same packages as pip, faster; pip where uv is unavailable. Bytecode compiled at install, as pip does.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if $(PY) -m pip install -q uv && $(VENV)/bin/uv pip install --compile-bytecode --python $(PY) $(TORCH_PINS) -e ".[test]"; then \
		:; \
	else \
		$(PY) -m pip install $(TORCH_PINS) -e ".[test]"; \
	fi
	touch $@

install: $(VENV)/.installed

# With a CUDA GPU: the paper's recipe (CUDA graphs chosen automatically). Without one: the 60-minute CPU preset
# (the paper's 1000 epochs would take days on a CPU); `make train-paper` runs the paper's recipe anyway.
train: install
	@if $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
		$(PY) -m gan_lightning model=triple_gan data=mnist $(ARGS); \
	else \
		echo "no CUDA GPU: running the 60-minute CPU preset experiment=triple_gan_mnist100_fast (make train-paper: the paper's recipe)"; \
		$(PY) -m gan_lightning experiment=triple_gan_mnist100_fast $(ARGS); \
	fi

train-paper: install
	$(PY) -m gan_lightning model=triple_gan data=mnist $(ARGS)

# the whole suite, one worker per core (pytest-xdist): tests spread one by one, except those sharing an expensive
# run (marked xdist_group), which stay on one worker
JOBS ?= auto
test: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup $(ARGS)

# the edit loop: everything that is not marked slow (no CLI runs, no training beyond a few steps)
test-fast: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup -m "not slow" $(ARGS)

# the same checks as .pre-commit-config.yaml: formatting, lint rules, types
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs --port 6006

sweep: install
	$(PY) -m gan_lightning -m model=gan data=mnist trainer=debug model.optimizers.g.lr=1e-4,2e-4 seed=1,2

bench: install
	$(PY) -m bench.speed $(ARGS)

# one run of every GPU measurement in the speed docs (about 8 minutes on one CUDA GPU): bench/gpu_check.sh
bench-gpu: install
	PYTHON=$(PY) bash bench/gpu_check.sh

bench-mnist100: install
	$(PY) -m bench.mnist100 $(ARGS)

bench-generators: install
	$(PY) -m bench.generators $(ARGS)

# the reference feature network of a dataset (FID/KID/IS): make reference DATA=fashion_mnist
DATA ?= mnist
reference: install
	$(PY) -m gan_lightning task=reference data=$(DATA) $(ARGS)

# make evaluate CKPT=outputs/<date>/<time>/checkpoints/last.ckpt  -> FID, KID, IS, cond. accuracy table
evaluate: install
	$(PY) -m gan_lightning task=evaluate ckpt_path=$(CKPT) $(ARGS)

sample: install
	$(PY) -m gan_lightning task=sample ckpt_path=$(CKPT) $(ARGS)

analyze: install
	$(PY) -m gan_lightning task=analyze ckpt_path=$(CKPT) $(ARGS)

clean:
	rm -rf outputs/*/ .pytest_cache lightning_logs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
