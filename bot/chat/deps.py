"""What a ChatService is built from: its collaborators, required, with null objects for absent features.

`app` builds a `ChatDeps` from the settings; tests build one with a fake engine. A bot without a
knowledge base gets `NoKnowledge`, without safety checks `NoSafety`, without a desk `NoDesk`: the service
never asks "is there one?".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bot.chat.gate import AllowAll, Gate
from bot.chat.ordering import ChatTurns
from bot.chat.ranking import Embed
from bot.core.domain import Action, GenerationParams, Verdict
from bot.core.errors import ConfigError
from bot.desk.desk import Desk, NoDesk
from bot.knowledge.base import Grounded, Knowledge, Retrieval
from bot.llm.base import Engine
from bot.metrics import Metrics
from bot.prompt.builder import PromptBuilder
from bot.storage.base import AuditLog, ConversationStore

__all__ = ["ChatDeps", "ChatOptions", "NoAudit", "NoKnowledge", "NoSafety", "Safety"]


class Safety(Protocol):
    """The safety checks the service applies (bot.safety.SafetyPipeline)."""

    def check_input(self, text: str) -> Verdict: ...

    def check_output(self, text: str, *, final: bool = True) -> Verdict: ...

    def message_for(self, verdict: Verdict, *, reply: bool = False) -> str: ...

    def allow_public(self, text: str) -> None: ...

    @property
    def refusal_text(self) -> str: ...


class NoSafety:
    """Every message and reply passes unchanged."""

    refusal_text = "Sorry, I can't help with that."

    def check_input(self, text: str) -> Verdict:
        return Verdict(Action.ALLOW, text)

    def check_output(self, text: str, *, final: bool = True) -> Verdict:
        return Verdict(Action.ALLOW, text)

    def message_for(self, verdict: Verdict, *, reply: bool = False) -> str:
        return self.refusal_text

    def allow_public(self, text: str) -> None:
        return None


class NoKnowledge:
    """No knowledge base: every message is small talk for it, so the model answers freely."""

    public_text = ""

    async def retrieve(self, text: str) -> Retrieval:
        return Retrieval(small_talk=True)

    def ground(self, question: str, reply: str, retrieval: Retrieval) -> Grounded:
        return Grounded(reply, answered=bool(reply.strip()))

    async def reload(self) -> str:
        raise ConfigError("no knowledge base is configured: set KB_PATH to a folder of documents")


class NoAudit:
    """Safety events are counted in metrics only, not kept."""

    async def record(self, event: Mapping[str, str]) -> None:
        return None

    async def recent(self, count: int) -> list[dict[str, str]]:
        return []


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """The service's own settings. `max_queued_per_chat`: messages of one chat that may wait for their
    turn (0 = no cap); `kb_max_new_tokens`: the budget of a grounded knowledge-base draft;
    `kb_draft_max_load`: a draft is written only while fewer replies than this are in flight."""

    max_queued_per_chat: int = 20
    kb_max_new_tokens: int = 96
    kb_draft_max_load: int = 0


@dataclass(frozen=True, slots=True)
class ChatDeps:
    """Everything a ChatService works with. The first four are what every bot has."""

    store: ConversationStore
    engine: Engine
    prompts: PromptBuilder
    params: GenerationParams
    gate: Gate | AllowAll = field(default_factory=AllowAll)
    safety: Safety = field(default_factory=NoSafety)
    knowledge: Knowledge = field(default_factory=NoKnowledge)
    desk: Desk = field(default_factory=NoDesk)
    audit: AuditLog = field(default_factory=NoAudit)
    metrics: Metrics = field(default_factory=Metrics)
    turns: ChatTurns = field(default_factory=ChatTurns.local)
    options: ChatOptions = field(default_factory=ChatOptions)
    embed: Embed | None = None  # the sentence embedder for best-of-n relevance (None: word overlap)
