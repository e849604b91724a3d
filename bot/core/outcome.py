"""How a reply ended, as a value: what the transport shows, and what the service learned on the way.

`ChatService.respond` returns a `Reply` whose stream carries the model's text as it is produced and whose
`Outcome` says how the reply ended. Refusals, limits, handoffs and overload are outcomes, not exceptions:
every transport renders the same value, and exceptions are left for real failures (bugs, cancellation).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Outcome", "OutcomeKind"]


class OutcomeKind(StrEnum):
    ANSWERED = "answered"  # the model's (or the knowledge base's) reply was shown
    REPLACED = "replaced"  # the reply failed the output checks: `text` replaces whatever was shown
    REFUSED = "refused"  # the input safety checks refused the message
    RATE_LIMITED = "rate_limited"  # over the per-minute or daily limit
    QUEUE_FULL = "queue_full"  # too many of this chat's messages are already waiting
    DENIED = "denied"  # not on the allow-list
    DUPLICATE = "duplicate"  # a redelivery of an update already answered: show nothing
    HANDED_OFF = "handed_off"  # a person owns the chat: the bot stays silent, the transport relays
    HANDOFF_REQUESTED = "handoff_requested"  # the chat was just handed to a person
    EMPTY_INPUT = "empty_input"  # nothing visible in the message
    BUSY = "busy"  # the model's queue is full
    TIMEOUT = "timeout"  # the model stalled
    TOO_LONG = "too_long"  # the message does not fit the model's context
    ERROR = "error"  # the model failed


# `bot_replies_total{outcome}` keeps the labels it had before outcomes were values
_METRIC_LABELS = {
    OutcomeKind.HANDED_OFF: "answered",
    OutcomeKind.HANDOFF_REQUESTED: "answered",
    OutcomeKind.QUEUE_FULL: "rate_limited",
    OutcomeKind.BUSY: "error",
    OutcomeKind.TOO_LONG: "error",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one reply ended.

    `text`: what the person sees in the end (the whole reply when answered; the replacement; the notice);
    empty when nothing is to be shown. `question`/`reply`: the turns as stored (redacted). `declined`: the
    knowledge base had no answer (the bot said so); `grounded`: the reply was verified against it.
    `retry_after`: seconds until a limited user may write again.
    `handoff`: after this answer the chat was handed to a person (too many unanswered questions).
    """

    kind: OutcomeKind
    text: str = ""
    question: str = ""
    reply: str = ""
    asker_id: int | None = None
    sources: tuple[str, ...] = ()
    confidence: float | None = None
    grounded: bool = False
    declined: bool = False
    retry_after: float | None = None
    handoff: bool = False  # the chat was just handed to a person: the transport tells both sides

    @property
    def handed_over(self) -> bool:
        """The chat went to a person with this message (asked for, or after too many unanswered)."""
        return self.handoff or self.kind is OutcomeKind.HANDOFF_REQUESTED

    @property
    def metric_label(self) -> str:
        return _METRIC_LABELS.get(self.kind, self.kind.value)

    @property
    def streamed(self) -> bool:
        """The text came (or comes) through the reply's stream, as it was generated."""
        return self.kind in (OutcomeKind.ANSWERED, OutcomeKind.REPLACED)
