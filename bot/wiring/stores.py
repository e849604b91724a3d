"""Which stores REDIS_URL means: Redis (checked to answer, with a hint when it does not) or in-process."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.config import Settings, redact_url
from bot.core.errors import StoreUnavailable
from bot.storage.base import AuditLog, ChatLocks, ConversationStore, Limits
from bot.storage.desk_base import SupportStores
from bot.storage.inbox import InboxFactory

__all__ = ["DEFAULT_REDIS_URL", "REDIS_HINT", "State", "open_state"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

log = logging.getLogger(__name__)

REDIS_HINT = (
    "start one with `redis-server --daemonize yes` (or `docker compose up -d redis`), "
    "or set REDIS_URL=memory:// to keep history in this process only"
)


@dataclass
class State:
    """Everything the bot keeps outside the process: history, counters, the safety audit log."""

    store: ConversationStore
    limits: Limits
    audit: AuditLog
    support: SupportStores | None = None  # handoffs, feedback, analytics (same backend as the history)
    locks: ChatLocks | None = None  # one reply per chat at a time, across every replica sharing the store
    inboxes: InboxFactory | None = None  # a bot's accepted, unanswered updates (polling), by bot id

    async def aclose(self) -> None:
        """Close the connection every store shares (the history store owns it)."""
        await self.store.aclose()


async def open_state(settings: Settings, *, default_url: str) -> State:
    """History, counters and the audit log where REDIS_URL (or `default_url`) says, checked to answer."""
    url = settings.redis.url or default_url
    if url.startswith("memory://"):
        return _in_process(settings)
    from bot.storage.redis.desk import RedisAnalytics, RedisFeedback, RedisHandoffs
    from bot.storage.redis.inbox import RedisInbox
    from bot.storage.redis.store import RedisAudit, RedisChatLocks, RedisLimits, RedisStore, connect

    client = connect(url)
    prefix, history = settings.redis.key_prefix, settings.history
    store = RedisStore(client, prefix=prefix, max_turns=history.max_turns, ttl_seconds=history.ttl_seconds)
    try:
        await store.ping()
    except StoreUnavailable as exc:
        await store.aclose()
        raise StoreUnavailable(
            f"Redis at {redact_url(url)} (REDIS_URL) is not reachable: {exc}; {REDIS_HINT}"
        ) from exc
    log.info("conversation history in Redis at %s", redact_url(url))
    support = SupportStores(
        RedisHandoffs(client, prefix=prefix),
        RedisFeedback(client, prefix=prefix),
        RedisAnalytics(client, prefix=prefix),
    )
    return State(
        store,
        RedisLimits(client, prefix=prefix),
        RedisAudit(client, prefix=prefix, max_entries=settings.safety.audit_max_entries),
        support,
        locks=RedisChatLocks(client, prefix=prefix),
        inboxes=lambda bot_id: RedisInbox(client, prefix=prefix, bot_id=bot_id),
    )


def _in_process(settings: Settings) -> State:
    """REDIS_URL=memory://: this process's own dictionaries (history is lost when it ends)."""
    from bot.storage.inprocess.desk import InProcessAnalytics, InProcessFeedback, InProcessHandoffs
    from bot.storage.inprocess.inbox import InProcessInbox
    from bot.storage.inprocess.store import (
        InProcessAudit,
        InProcessChatLocks,
        InProcessLimits,
        InProcessStore,
    )

    history = settings.history
    return State(
        InProcessStore(max_turns=history.max_turns, ttl_seconds=history.ttl_seconds),
        InProcessLimits(),
        InProcessAudit(max_entries=settings.safety.audit_max_entries),
        SupportStores(InProcessHandoffs(), InProcessFeedback(), InProcessAnalytics()),
        locks=InProcessChatLocks(),
        inboxes=lambda _bot_id: InProcessInbox(),
    )
