"""Safety events: a block or redaction is counted in metrics and kept in the audit log, never its text."""

from __future__ import annotations

import logging
import time

from bot.core.domain import Verdict
from bot.core.errors import StoreUnavailable
from bot.metrics import Metrics
from bot.storage.base import AuditLog

__all__ = ["SafetyAudit"]

log = logging.getLogger("bot.chat.service")


class SafetyAudit:
    def __init__(self, audit: AuditLog, metrics: Metrics) -> None:
        self._audit = audit
        self._metrics = metrics

    async def __call__(self, chat_id: int | str, direction: str, verdict: Verdict) -> None:
        """Record a block or redaction: reason codes and chat id only."""
        if not verdict.reasons:
            return
        if verdict.blocked:
            what = "message" if direction == "in" else "reply"
            log.info("chat %s: %s blocked (%s)", chat_id, what, ",".join(verdict.reasons))
        for reason in verdict.reasons:
            self._metrics.safety.labels(direction, verdict.action.value, reason).inc()
        event = {
            "ts": f"{time.time():.3f}",
            "chat": str(chat_id),
            "direction": direction,
            "action": verdict.action.value,
            "reasons": ",".join(verdict.reasons),
        }
        try:
            await self._audit.record(event)
        except StoreUnavailable as exc:
            self._metrics.redis_errors.labels("audit").inc()
            log.warning("safety event not recorded: %s", exc)
