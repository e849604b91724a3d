"""The local transformers engine: loader, batching scheduler, KV caches, sampling, detokenisation."""

__all__: list[str] = []
