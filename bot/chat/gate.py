"""One gate in front of the model: the allow-lists, and per-user rate limits and daily quotas.

Counters live in the shared `Limits` store (Redis in production), so limits hold across restarts and
replicas. If that store is down the gate lets messages through and logs it: an outage of the counters
should not silence the support bot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.core.errors import StoreUnavailable
from bot.core.outcome import Outcome, OutcomeKind
from bot.core.texts import Texts, rate_limit_text
from bot.storage.base import Bucket, Limits

__all__ = ["AccessPolicy", "AllowAll", "Gate"]

log = logging.getLogger(__name__)

MINUTE, DAY = 60, 86_400


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Empty allow-lists admit everyone; admins are always admitted and never rate limited."""

    allowed_user_ids: frozenset[int] = field(default_factory=frozenset)
    allowed_chat_ids: frozenset[int] = field(default_factory=frozenset)
    admin_user_ids: frozenset[int] = field(default_factory=frozenset)
    per_minute: int = 0  # 0 = no limit
    per_day: int = 0


class Gate:
    def __init__(
        self, policy: AccessPolicy, limits: Limits, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._policy = policy
        self._limits = limits
        self._clock = clock

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self._policy.admin_user_ids

    def allows(self, user_id: int | None, chat_id: int | str) -> bool:
        policy = self._policy
        if self.is_admin(user_id) or not (policy.allowed_user_ids or policy.allowed_chat_ids):
            return True
        return user_id in policy.allowed_user_ids or chat_id in policy.allowed_chat_ids

    async def admit(self, user_id: int | None, chat_id: int | str) -> Outcome | None:
        """Count the message and return None, or the outcome that turns it away (denied, rate limited)."""
        if not self.allows(user_id, chat_id):
            log.info("user %s in chat %s is not allowed", user_id, chat_id)
            return Outcome(OutcomeKind.DENIED, Texts.NOT_ALLOWED)
        if user_id is None or self.is_admin(user_id):
            return None
        return await self._count(user_id)

    async def _count(self, user_id: int) -> Outcome | None:
        now = self._clock()
        windows = [(MINUTE, self._policy.per_minute, "min"), (DAY, self._policy.per_day, "day")]
        active = [(size, limit, name) for size, limit, name in windows if limit > 0]
        if not active:
            return None
        buckets = [Bucket(f"{name}:{int(now // size)}", limit, size + 60) for size, limit, name in active]
        try:
            full = await self._limits.consume(f"user:{user_id}", buckets)
        except StoreUnavailable as exc:
            log.warning("rate limits not checked for user %s: %s", user_id, exc)
            return None
        if full < 0:
            return None
        size, limit, name = active[full]
        log.info("user %s is over %d messages per %s", user_id, limit, name)
        retry_after = size - now % size
        text = rate_limit_text(retry_after, daily=name == "day")
        return Outcome(OutcomeKind.RATE_LIMITED, text, retry_after=retry_after)


class AllowAll:
    """No allow-lists, no limits, no admins: for a bot used by its own developer (and fast tests)."""

    def is_admin(self, user_id: int | None) -> bool:
        return False

    def allows(self, user_id: int | None, chat_id: int | str) -> bool:
        return True

    async def admit(self, user_id: int | None, chat_id: int | str) -> Outcome | None:
        return None
