"""Prometheus metrics: one registry per process (per app in tests), recorded by the service and transports.

Names follow Prometheus conventions (`_total` counters, `_seconds` histograms). Labels are small, fixed
sets (outcome, direction, action, reason code, error type): never user ids or text.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._replies(self.registry)
        self._engine(self.registry)
        self._errors(self.registry)

    def _replies(self, r: CollectorRegistry) -> None:
        """How messages were answered, and how fast."""
        self.updates = Counter(
            "bot_updates_received_total", "Telegram updates handled, by kind", ["kind"], registry=r
        )
        self.replies = Counter("bot_replies_total", "Replies finished, by outcome", ["outcome"], registry=r)
        self.reply_seconds = Histogram(
            "bot_reply_seconds",
            "From a message's arrival to its complete reply",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token_seconds = Histogram(
            "bot_time_to_first_token_seconds",
            "From a message's arrival to the first text of its reply",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.kb_drafts = Counter(
            "bot_kb_drafts_total",
            "Knowledge-base drafts of the model: used, discarded after verification, stopped while written, "
            "skipped (the model was busy: the passage answered)",
            ["result"],
            registry=r,
        )

    def _engine(self, r: CollectorRegistry) -> None:
        """What the model did: tokens, queue, batches, KV-cache reuse."""
        self.tokens = Counter("bot_tokens_generated_total", "Tokens the model generated", registry=r)
        self.queue_depth = Gauge("bot_engine_queue_depth", "Generations waiting for the model", registry=r)
        self.batch_size = Histogram(
            "bot_engine_batch_size",
            "Sequences decoded together, per decode step",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.cache_lookups = Counter(
            "bot_engine_cache_lookups_total",
            "Prompts that started from a cached prefix (hit) or from nothing (miss)",
            ["result"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "bot_engine_prompt_tokens_total",
            "Prompt tokens taken from the KV cache (cached) or computed (computed)",
            ["source"],
            registry=r,
        )

    def _errors(self, r: CollectorRegistry) -> None:
        """Safety events and failed calls to the outside."""
        self.safety = Counter(
            "bot_safety_events_total",
            "Safety blocks and redactions",
            ["direction", "action", "reason"],
            registry=r,
        )
        self.redis_errors = Counter(
            "bot_redis_errors_total", "Redis calls that failed", ["operation"], registry=r
        )
        self.telegram_errors = Counter(
            "bot_telegram_api_errors_total", "Bot API calls that failed, by error type", ["type"], registry=r
        )

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
