"""Turn a system prompt, a chat's history and the new message into token ids that fit the model.

Models with a chat template are prompted through it; models without one (the GPT-2 family) get a plain
"User:/Assistant:" transcript and stop strings that end the reply where the model would start the next
speaker's line. History is dropped from the oldest turn until prompt + reply budget fits the context.

Knowledge-base passages, when given, are appended to the system prompt with the instruction to answer
only from them. They outrank old history: passages beyond the best one go first, then history from the
oldest turn, and the best passage only when the message alone would not fit otherwise.

Small models use what is in the system part far better than what is deep in the transcript, so the facts
the customer stated (`facts`, label -> value) are rendered there as one compact line, and so is a short
extractive summary of the customer's turns that had to be dropped to fit. Optional few-shot `examples`
(questions with their answers) go between the system part and the history: they show a small model the
shape of a good support answer (do the task, do not refuse or send the customer elsewhere).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot.core.domain import Prompt, Role, Turn
from bot.core.errors import PromptTooLong
from bot.prompt.examples import Topic, WorkedExample

__all__ = [
    "KNOWLEDGE_INSTRUCTIONS",
    "SUMMARY_WORDS",
    "ChatFormat",
    "PromptBuilder",
    "Tokenizer",
    "render_facts",
    "summarise",
]

SUMMARY_WORDS = 60  # the extractive summary of dropped turns stays this short

KNOWLEDGE_INSTRUCTIONS = (
    "Answer the customer's question using only the knowledge base excerpts below. Copy prices, times, "
    "deadlines and contact details exactly as written there. If the excerpts do not answer the question, "
    "say that you do not know and suggest /operator to reach a person. Keep the answer to two or three "
    "sentences."
)


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the builder uses."""

    chat_template: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


class ChatFormat:
    """Renders messages to token ids with the tokenizer's chat template, or a plain transcript."""

    PLAIN_STOP_STRINGS = ("\nUser:", "\nAssistant:", "\nSystem:")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self.uses_template = bool(getattr(tokenizer, "chat_template", None))
        self._system_role = self.uses_template and self._template_accepts_system()

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return () if self.uses_template else self.PLAIN_STOP_STRINGS

    def render(self, system: str, messages: Sequence[tuple[Role, str]]) -> list[int]:
        if not self.uses_template:
            lines = [f"System: {system}", ""] if system else []
            lines += [f"{'User' if role is Role.USER else 'Assistant'}: {text}" for role, text in messages]
            lines.append("Assistant:")
            return self._tokenizer.encode("\n".join(lines), add_special_tokens=True)
        chat = [{"role": role.value, "content": text} for role, text in messages]
        if system and self._system_role:
            chat.insert(0, {"role": "system", "content": system})
        elif system and chat:  # templates without a system role: prepend it to the first user message
            chat[0] = {"role": chat[0]["role"], "content": f"{system}\n\n{chat[0]['content']}"}
        text = self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return self._tokenizer.encode(str(text), add_special_tokens=False)

    def _template_accepts_system(self) -> bool:
        probe = [{"role": "system", "content": "SYSTEM-PROBE"}, {"role": "user", "content": "hi"}]
        try:
            text = self._tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        except Exception:  # Jinja raise_exception() in templates that refuse a system turn
            return False
        return "SYSTEM-PROBE" in str(text)


def render_facts(facts: Mapping[str, str]) -> str:
    """One compact line for the system part ("" when nothing is known)."""
    if not facts:
        return ""
    listed = "; ".join(f"{label}: {value}" for label, value in facts.items())
    return f"What the customer told you earlier (use it when they ask): {listed}."


def summarise(dropped: Sequence[tuple[Role, str]]) -> str:
    """The customer's dropped turns, newest first, first sentence of each, at most SUMMARY_WORDS words."""
    words: list[str] = []
    for role, text in reversed(dropped):
        if role is not Role.USER:
            continue
        sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0].split()
        if len(words) + len(sentence) > SUMMARY_WORDS:
            break
        words += [*sentence[:-1], sentence[-1].rstrip(".!?") + ";"] if sentence else []
    return f"Earlier in this chat the customer said: {' '.join(words).rstrip(';')}." if words else ""


class PromptBuilder:
    def __init__(
        self,
        chat_format: ChatFormat,
        *,
        system_prompt: str,
        context_tokens: int,
        examples: Sequence[WorkedExample] = (),
    ) -> None:
        self._format = chat_format
        self._system = system_prompt
        self._context = context_tokens
        self._examples = [
            entry
            for example in examples
            for entry in ((Role.USER, example.question), (Role.ASSISTANT, example.answer))
        ]
        self._topics = tuple(topic for example in examples for topic in example.topics)

    @property
    def system_prompt(self) -> str:
        return self._system

    @property
    def example_answers(self) -> tuple[str, ...]:
        """The worked examples' answers: shapes to follow, never texts to send (`bot.chat.likeness`)."""
        return tuple(text for role, text in self._examples if role is Role.ASSISTANT)

    @property
    def example_topics(self) -> tuple[Topic, ...]:
        """The worked examples' topics: not to be carried into chats that never raised them."""
        return self._topics

    def build(
        self,
        history: Sequence[Turn],
        message: Turn,
        *,
        max_new_tokens: int,
        label_authors: bool = False,
        session: str | None = None,
        knowledge: Sequence[str] = (),
        facts: Mapping[str, str] | None = None,
    ) -> Prompt:
        """The longest suffix of `history` that, with `message` and `knowledge` (passages, best first), leaves
        room for `max_new_tokens`; `facts` and a summary of what was dropped go in the system part."""
        budget, passages = self._context - max_new_tokens, list(knowledge)
        entries, new = [_entry(turn, label_authors) for turn in history], _entry(message, label_authors)
        examples = [] if passages else list(self._examples)  # with passages, their instructions lead
        start = 0
        while True:
            messages = [*entries[start:], new]
            notes = [render_facts(facts or {})]
            system = self._with_knowledge(passages, notes)
            ids = self._format.render(system, [*examples, *messages])
            if len(ids) <= budget:
                summary = summarise(entries[:start])  # what was dropped, in the room that is left
                if summary:
                    summed = self._with_knowledge(passages, [*notes, summary])
                    summed_ids = self._format.render(summed, [*examples, *messages])
                    if len(summed_ids) <= budget:
                        system, ids = summed, summed_ids
                shown = ((Role.SYSTEM, system), *examples, *messages) if system else (*examples, *messages)
                return Prompt(
                    tuple(ids),
                    self._format.stop_strings,
                    messages=tuple(shown),
                    history_used=len(entries) - start,
                    history_dropped=start,
                    session=session,
                )
            if len(passages) > 1 or (passages and start >= len(entries)):
                passages.pop()
                continue
            if examples:  # the examples go before any history does
                examples = []
                continue
            if start >= len(entries):
                raise PromptTooLong(f"the message needs {len(ids)} tokens but only {budget} fit the context")
            start += 1
            # Never open the transcript with a bot turn: some templates require user/assistant alternation.
            while start < len(entries) and entries[start][0] is Role.ASSISTANT:
                start += 1

    def _with_knowledge(self, passages: Sequence[str], notes: Sequence[str] = ()) -> str:
        parts = [self._system, *notes]
        if passages:
            parts += [KNOWLEDGE_INSTRUCTIONS, *passages]
        return "\n\n".join(part for part in parts if part)


def _entry(turn: Turn, label_authors: bool) -> tuple[Role, str]:
    if label_authors and turn.role is Role.USER and turn.author:
        return turn.role, f"{turn.author}: {turn.content}"
    return turn.role, turn.content
