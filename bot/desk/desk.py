"""The support desk as one value: handoffs, feedback and analytics, and the settings transports need.

The service uses `handoffs` (silence while a person owns a chat, escalation) and `analytics` (events);
transports add the operator chat and the feedback buttons. `app` builds it; it is passed down whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.desk.analytics import Analytics
from bot.desk.feedback import Feedback
from bot.desk.handoff import Handoffs

__all__ = ["SupportDesk"]


@dataclass(frozen=True, slots=True)
class SupportDesk:
    handoffs: Handoffs
    feedback: Feedback
    analytics: Analytics
    operator_chat_id: int | None = None
    feedback_buttons: bool = True
