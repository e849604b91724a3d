"""The safety pipeline: every user message and every reply passes through it.

Each check returns reasons; the pipeline turns them into one typed Verdict (allow / redact with the new
text / block with reason codes) according to the admin's settings. It is pure and fast (well under a
millisecond for a typical message), so it runs inline on the event loop.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from bot.config import SafetySettings
from bot.core.domain import Action, Verdict
from bot.safety.injection import InjectionDetector
from bot.safety.output import PromptLeakDetector, babble_start, is_degenerate
from bot.safety.pii import PiiRedactor
from bot.safety.semantic import SemanticDetector
from bot.safety.text import clean, skeleton
from bot.safety.toxicity import ProfanityDetector

__all__ = ["SafetyPipeline"]

_SENTENCE_END = re.compile("[.!?\u2026\u3002\uff01\uff1f](?=\\s|$)")


class SafetyPipeline:
    def __init__(
        self,
        settings: SafetySettings,
        *,
        system_prompt: str = "",
        canary: str | None = None,
        semantic: SemanticDetector | None = None,
    ) -> None:
        """`semantic`: the embedding-based detector fused with the rules (None: rules only)."""
        self._settings = settings
        self._semantic = semantic
        self._pii = PiiRedactor([r.strip().upper() for r in settings.phone_regions.split(",") if r.strip()])
        self._injection = InjectionDetector()
        self._profanity = ProfanityDetector()
        terms = settings.terms()
        self._terms = (
            re.compile("|".join(rf"(?<!\w){re.escape(skeleton(t))}(?!\w)" for t in terms)) if terms else None
        )
        self._leak = PromptLeakDetector(
            system_prompt, canary=canary if settings.canary else None, min_words=settings.prompt_overlap_words
        )
        # contact data the company itself put in the system prompt may be repeated in replies
        self._public = frozenset(system_prompt[f.start : f.end] for f in self._pii.find(system_prompt))
        self.counts: Counter[str] = Counter()  # reason -> events, for metrics and `bot safety-eval`

    # -- input ------------------------------------------------------------------------------------
    def check_input(self, text: str) -> Verdict:
        s = self._settings
        if len(text) > s.max_input_chars:  # before any other work: bounded time for any input size
            return self._count(Verdict(Action.BLOCK, "", ("too_long",)))
        reasons: list[str] = []
        if s.normalize_unicode:
            cleaned = clean(text)
            if cleaned != unicodedata.normalize("NFKC", text):
                reasons.append("hidden_characters")
            text = cleaned
        if s.injection_action != "off" and (kinds := self._injection.detect(text)):
            reasons += [f"injection:{kind}" for kind in kinds]
            if s.injection_action == "block":
                return self._count(Verdict(Action.BLOCK, "", tuple(reasons)))
        if self._terms is not None and self._terms.search(skeleton(text)):
            return self._count(Verdict(Action.BLOCK, "", (*reasons, "blocked_term")))
        found = self._profanity.detect(text)
        if found != ["abuse"] and (semantic := self._semantic_kinds(text, reasons)):
            if "injection" in semantic and s.injection_action != "off":
                reasons.append("injection:semantic")
                if s.injection_action == "block":
                    return self._count(Verdict(Action.BLOCK, "", tuple(reasons)))
            if "abuse" in semantic:
                found, reasons = ["abuse"], [*reasons, "semantic"]
        action = {"abuse": s.abuse_action, "profanity": s.profanity_action}.get(found[0]) if found else "off"
        if action != "off":
            reasons += found
            if action == "block":
                return self._count(Verdict(Action.BLOCK, "", tuple(reasons)))
            if action == "redact":
                text = self._profanity.mask(text)
        if s.redact_pii:
            text, kinds = self._pii.redact(text)
            reasons += [f"pii:{kind}" for kind in dict.fromkeys(kinds)]
        return self._count(self._verdict(text, reasons, log_only=s.injection_action == "log"))

    def _semantic_kinds(self, text: str, reasons: list[str]) -> list[str]:
        """What the semantic detector sees, when the rules have not already found an injection."""
        if self._semantic is None or any(r.startswith("injection:") for r in reasons):
            return []
        return self._semantic.detect(text)

    # -- output -----------------------------------------------------------------------------------
    def check_output(self, text: str, *, final: bool = True) -> Verdict:
        """`final=False` is for drafts while streaming: only the checks a partial text can fail."""
        s = self._settings
        reasons = self._leak.detect(text)
        if reasons:
            return self._count(Verdict(Action.BLOCK, "", tuple(reasons)), final)
        if final and s.check_degenerate and is_degenerate(text):
            return self._count(Verdict(Action.BLOCK, "", ("degenerate",)), final)
        if final and s.check_degenerate and (babble := babble_start(text)) is not None:
            if not text[:babble].strip():
                return self._count(Verdict(Action.BLOCK, "", ("degenerate",)), final)
            text = text[:babble].rstrip()  # the reply up to its babbled tail
            reasons.append("degenerate_tail")
        words = text if final else text[: max(text.rfind(" "), 0)]  # a draft may end mid-word ("ass|istant")
        if s.output_profanity and (found := self._profanity.detect(words)):  # the bot never swears
            return self._count(Verdict(Action.BLOCK, "", tuple(found)), final)
        if s.redact_pii:
            text, kinds = self._pii.redact(text, keep=self._public)
            reasons += [f"pii:{kind}" for kind in dict.fromkeys(kinds)]
        if final and len(text) > s.max_output_chars:
            text = _cut(text, s.max_output_chars)
            reasons.append("too_long")
        return self._count(self._verdict(text, reasons), final)

    def message_for(self, verdict: Verdict, *, reply: bool = False) -> str:
        """What the person is told instead of a refused message or, `reply`, instead of a reply that failed
        the output checks. A reply that swore or insulted was the model's doing: the customer is asked to
        rephrase, never told to "keep it respectful" (which an ordinary request got when the model's
        answer to it was blocked)."""
        s = self._settings
        if "too_long" in verdict.reasons and not reply:
            return s.too_long_text
        if "degenerate" in verdict.reasons:
            return s.fallback_text
        if {"profanity", "abuse"} & set(verdict.reasons):
            return s.fallback_text if reply else s.abuse_text
        return s.refusal_text

    def allow_public(self, text: str) -> None:
        """Contact data in `text` (the company's knowledge base) is public: replies may repeat it."""
        self._public = self._public | frozenset(text[f.start : f.end] for f in self._pii.find(text))

    @property
    def refusal_text(self) -> str:
        return self._settings.refusal_text

    def _verdict(self, text: str, reasons: list[str], *, log_only: bool = False) -> Verdict:
        cut = ("hidden_characters", "too_long", "degenerate_tail")
        redacted = any(r.startswith("pii:") or r in cut for r in reasons)
        redacted = redacted or (self._settings.profanity_action == "redact" and "profanity" in reasons)
        return Verdict(Action.REDACT if redacted else Action.ALLOW, text, tuple(reasons))

    def _count(self, verdict: Verdict, count: bool = True) -> Verdict:
        if count:
            self.counts.update(verdict.reasons)
        return verdict


def _cut(text: str, limit: int) -> str:
    window = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    return window[: ends[-1]] if ends and ends[-1] > limit // 2 else window.rstrip() + "…"
