# Redundancy Advisor: the two commands of the README, and the pieces they are made of.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo analyze test test-fast lint screenshots services clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Torch first, pinned: an unpinned resolver run may fetch a multi-GB build from elsewhere.
$(VENV)/.installed: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[dev,text,onnx,mlflow,otel]' -e './client[webhooks]'
	touch $@

setup: $(VENV)/.installed

# The main job through the service: embedded API + worker (SQLite, no Postgres or Redis), the bundled
# ImageNet EfficientNet-Lite0 on scikit-learn's digits at 64 px, progress while polling, then the answer
# at relative δ = 0.05 with its fairness cost and a table for other δ (about 40 s on 2 idle cores).
demo: setup
	bash scripts/demo.sh

# The same analysis with the engine alone, no service: the curve table and the advice.
analyze: setup
	HF_HUB_OFFLINE=1 $(BIN)/advisor analyze --model tf_efficientnet_lite0 --weights bundled --dataset digits \
		--delta 0.01 --delta 0.05 --delta-mode absolute --out advisor-report.json --plot advisor-report.png

# The import contracts of docs/architecture.md (pyproject.toml [tool.importlinter]) first, then every test.
test: setup
	$(BIN)/lint-imports
	bash scripts/services.sh
	bash scripts/browser.sh
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# The fast tier while editing: every test but `slow` (tests/engine: real models, subprocesses),
# `integration` (Postgres, Redis, Celery) and `browser` (chromium); about 5 minutes on 2 busy cores.
# `make test` stays the full run (and .ci/run's).
test-fast: setup
	$(BIN)/lint-imports
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not integration and not browser"

# The README's screenshots (docs/img): the browser tests that take them, told to write there. Tests never
# write into the checkout otherwise (they use temporary directories, and a test checks the tree is unchanged).
screenshots: setup
	bash scripts/browser.sh
	ADVISOR_SCREENSHOT_DIR=$(CURDIR)/docs/img HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/ui/test_ui_browser.py \
		-k "submit_follow or docs_render"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache advisor-report.json advisor-report.png
