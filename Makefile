# One-command set-up: every target creates .venv (idempotently) before it runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
VISDOM_PAGE := $(VENV)/.visdom-page-stamp
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-fast test-floors lint bench bench-gpu bench-quick docs site serve-docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev,visdom,docs,export]"
	$(BIN)/python -c "import torch, torchvision, timm, safetensors, huggingface_hub, zoo"
	touch $(STAMP)

# Visdom's web page (JavaScript, CSS, fonts) from the npm registry, so that `python -m visdom.server` needs no CDN;
# skipped when installed for this visdom version, and only a note (never a failure) without npm.
$(VISDOM_PAGE): $(STAMP) tools/visdom_offline_assets.py
	$(BIN)/python tools/visdom_offline_assets.py --optional
	touch $(VISDOM_PAGE)

venv: $(STAMP) $(VISDOM_PAGE)

demo: venv  ## the main job: classify the bundled samples with the bundled weights; fails below the manifest's promise
	$(BIN)/zoo predict

test: venv  ## lint, import contracts, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: venv  ## the loop for edits: lint, then the tests not marked slow (about a minute on 2 cores)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

FLOORS := .floors
FLOOR_TESTS := tests/test_timm_interface.py tests/test_transforms.py tests/test_batch_augment.py tests/test_finetune.py \
	tests/test_weights_fetch.py tests/test_weights_load.py tests/test_folder_names.py tests/test_public_weights.py

test-floors: venv  ## the tests that use timm, huggingface_hub and safetensors, on the lowest versions pyproject allows
	rm -rf $(FLOORS)
	PIP_CONSTRAINT= $(BIN)/python -m pip install -q --target $(FLOORS) --no-deps $$($(BIN)/python scripts/floors.py)
	PIP_CONSTRAINT= $(BIN)/python -m pip install -q --target $(FLOORS)/httpx-deps httpx
	PYTHONPATH=$(FLOORS):$(FLOORS)/httpx-deps $(BIN)/python scripts/floors.py --check
	PYTHONPATH=$(FLOORS):$(FLOORS)/httpx-deps $(BIN)/python -m pytest -q -n 2 --dist loadfile -p no:cacheprovider $(FLOOR_TESTS)

bench: venv  ## the CPU suite against torchvision and timm (under 10 minutes on 2 cores); results in benchmarks/results/
	$(BIN)/python benchmarks/import_time.py --runs 3
	$(BIN)/python benchmarks/inference.py --rounds 2 --steps 1 --instances 2
	$(BIN)/python benchmarks/train_overhead.py --rounds 3
	$(BIN)/python benchmarks/load_pretrained.py --repeats 2
	$(BIN)/python benchmarks/train_mnist.py
	$(BIN)/python benchmarks/train_timm.py --rounds 1 --per-class 150  # needs TIMM_TRAIN_PY=.../train.py

bench-gpu: venv  ## the scripts that time the device, on CUDA (about 10 minutes on an H200): results named *-cuda*
	PYTHON=$(BIN)/python bash benchmarks/gpu_suite.sh

bench-quick: venv  ## every benchmark script once on tiny settings (CI): checks that they run, keeps no results
	$(BIN)/python benchmarks/import_time.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/inference.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/train_overhead.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/folder_speed.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/load_pretrained.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/train_mnist.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/train_cifar.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/cifar_epoch.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/train_timm.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/models.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/lab_runs.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/course_vgg.py --quick --out $$(mktemp -d)
	$(BIN)/python benchmarks/profile_load.py

docs: venv  ## rewrite the committed tables in docs/ from the registry and the manifest
	$(BIN)/python docs/gen_tables.py

site: venv  ## build the documentation site strictly into site/ (offline)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

serve-docs: venv  ## serve the documentation site on http://127.0.0.1:8000 while editing
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
