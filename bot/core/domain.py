"""Small immutable values shared by every layer. Imports nothing from the project."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Action", "ChatKind", "GenerationParams", "Prompt", "Role", "Turn", "Verdict"]


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class Action(StrEnum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a safety check decided: `text` is what may go on (redacted when action is REDACT)."""

    action: Action
    text: str
    reasons: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK


class ChatKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation, as stored.

    `message_id` is the transport's id of the message (Telegram's message_id), used to drop redeliveries;
    `author` is a display name, kept so that group history records who said what.
    """

    role: Role
    content: str
    timestamp: float = field(default_factory=time.time)
    message_id: int | None = None
    user_id: int | None = None
    author: str | None = None

    def to_json_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"role": self.role.value, "content": self.content, "ts": self.timestamp}
        if self.message_id is not None:
            data["mid"] = self.message_id
        if self.user_id is not None:
            data["uid"] = self.user_id
        if self.author is not None:
            data["author"] = self.author
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, object]) -> Turn:
        mid, uid, author = data.get("mid"), data.get("uid"), data.get("author")
        return cls(
            role=Role(str(data["role"])),
            content=str(data["content"]),
            timestamp=float(data["ts"]),  # type: ignore[arg-type]
            message_id=int(mid) if mid is not None else None,  # type: ignore[call-overload]
            user_id=int(uid) if uid is not None else None,  # type: ignore[call-overload]
            author=str(author) if author is not None else None,
        )


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """How to sample one reply. Defaults match the GENERATION_* settings' defaults."""

    max_new_tokens: int = 256
    do_sample: bool = True
    temperature: float = 0.2
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.0  # applied to the reply's own tokens only, never the prompt's
    no_repeat_ngram: int = 0  # > 0: no n-gram of this size appears twice within one reply
    avoid_ngram: int = 0  # > 0: no n-gram of this size is copied from one of the `avoid` texts
    avoid: tuple[str, ...] = ()  # the chat's earlier replies: phrases not to copy
    seed: int | None = None
    timeout_seconds: float = 300.0  # longest total time of a reply once its prefill started
    stall_seconds: float = 30.0  # a reply with no new token for this long is given up (the model hangs)
    num_candidates: int = 1


@dataclass(frozen=True, slots=True)
class Prompt:
    """What an engine is asked to continue.

    `ids` are the rendered token ids (local engines run them); `messages` are the (role, text) pairs they
    were rendered from, system first (remote chat-completion engines send these instead). `session` names
    the conversation, so an engine may keep its state (a KV cache) between turns.
    """

    ids: tuple[int, ...]
    stop_strings: tuple[str, ...] = ()
    messages: tuple[tuple[Role, str], ...] = ()
    history_used: int = 0
    history_dropped: int = 0
    session: str | None = None

    @property
    def token_count(self) -> int:
        return len(self.ids)
