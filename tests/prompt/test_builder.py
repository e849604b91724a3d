"""The prompt builder with real tokenizers: templates, plain transcripts, trimming, group labels."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.core.domain import Role, Turn
from bot.core.errors import PromptTooLong
from bot.llm.local.loader import LoadedModel
from bot.prompt import ChatFormat, PromptBuilder
from bot.prompt.examples import WorkedExample

SYSTEM = "You are the support assistant of Acme."


def history(pairs: int) -> list[Turn]:
    turns: list[Turn] = []
    for n in range(pairs):
        turns += [Turn(Role.USER, f"question number {n}"), Turn(Role.ASSISTANT, f"answer number {n}")]
    return turns


def text_of(model: LoadedModel, ids: Sequence[int]) -> str:
    return str(model.tokenizer.decode(ids))


def test_chat_template_renders_system_history_and_the_new_message(tiny_llama: LoadedModel) -> None:
    builder = PromptBuilder(ChatFormat(tiny_llama.tokenizer), system_prompt=SYSTEM, context_tokens=512)
    prompt = builder.build(history(1), Turn(Role.USER, "Where is my parcel?"), max_new_tokens=16)
    text = text_of(tiny_llama, prompt.ids)
    assert text.startswith("<|im_start|>system\n" + SYSTEM)
    assert text.index("question number 0") < text.index("answer number 0") < text.index("Where is my parcel?")
    assert text.endswith("<|im_start|>assistant\n")
    assert prompt.stop_strings == ()
    assert (prompt.history_used, prompt.history_dropped) == (2, 0)
    assert prompt.token_count == len(tiny_llama.tokenizer.encode(text, add_special_tokens=False))


def test_oldest_turns_are_dropped_until_prompt_and_reply_fit(tiny_llama: LoadedModel) -> None:
    fmt = ChatFormat(tiny_llama.tokenizer)
    full = PromptBuilder(fmt, system_prompt=SYSTEM, context_tokens=10_000).build(
        history(10), Turn(Role.USER, "latest"), max_new_tokens=0
    )
    context, reply_budget = full.token_count // 2 + 50, 50
    prompt = PromptBuilder(fmt, system_prompt=SYSTEM, context_tokens=context).build(
        history(10), Turn(Role.USER, "latest"), max_new_tokens=reply_budget
    )
    assert prompt.token_count + reply_budget <= context
    assert 0 < prompt.history_used < 20 and prompt.history_dropped == 20 - prompt.history_used
    text = text_of(tiny_llama, prompt.ids)
    assert "answer number 9" in text and "question number 0" not in text
    # the kept history starts with a user turn
    assert text.split("<|im_start|>")[2].startswith("user")


def test_a_message_that_cannot_fit_is_refused(tiny_llama: LoadedModel) -> None:
    builder = PromptBuilder(ChatFormat(tiny_llama.tokenizer), system_prompt=SYSTEM, context_tokens=64)
    with pytest.raises(PromptTooLong):
        builder.build([], Turn(Role.USER, "word " * 200), max_new_tokens=16)


def test_models_without_a_template_get_a_plain_transcript(tiny_gpt2: LoadedModel) -> None:
    fmt = ChatFormat(tiny_gpt2.tokenizer)
    assert not fmt.uses_template
    prompt = PromptBuilder(fmt, system_prompt=SYSTEM, context_tokens=256).build(
        history(1), Turn(Role.USER, "Hello"), max_new_tokens=16
    )
    assert text_of(tiny_gpt2, prompt.ids) == (
        f"System: {SYSTEM}\n\nUser: question number 0\nAssistant: answer number 0\nUser: Hello\nAssistant:"
    )
    assert "\nUser:" in prompt.stop_strings


def test_group_history_records_who_said_what(tiny_llama: LoadedModel) -> None:
    builder = PromptBuilder(ChatFormat(tiny_llama.tokenizer), system_prompt=SYSTEM, context_tokens=512)
    past = [Turn(Role.USER, "I need help", author="Anna"), Turn(Role.ASSISTANT, "Sure")]
    prompt = builder.build(
        past, Turn(Role.USER, "Me too", author="Ben"), max_new_tokens=8, label_authors=True
    )
    text = text_of(tiny_llama, prompt.ids)
    assert "Anna: I need help" in text and "Ben: Me too" in text


def test_templates_without_a_system_role_get_it_in_the_first_message(tiny_llama: LoadedModel) -> None:
    tokenizer = tiny_llama.tokenizer
    strict = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
        "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"
    )
    original = tokenizer.chat_template
    tokenizer.chat_template = strict
    try:
        prompt = PromptBuilder(ChatFormat(tokenizer), system_prompt=SYSTEM, context_tokens=512).build(
            [], Turn(Role.USER, "Hi"), max_new_tokens=8
        )
    finally:
        tokenizer.chat_template = original
    assert text_of(tiny_llama, prompt.ids).startswith(f"[user] {SYSTEM}\n\nHi")


def test_facts_and_a_summary_of_dropped_turns_go_in_the_system_part(tiny_llama: LoadedModel) -> None:
    from bot.prompt.builder import render_facts, summarise

    builder = PromptBuilder(ChatFormat(tiny_llama.tokenizer), system_prompt="Be brief.", context_tokens=400)
    turns = [
        Turn(Role.USER, "My booking is for the 14th of March. Thanks!"),
        Turn(Role.ASSISTANT, "Noted " * 200),
    ]
    prompt = builder.build(
        turns, Turn(Role.USER, "When is it?"), max_new_tokens=60, facts={"date": "14 March"}
    )
    system = dict(prompt.messages)[Role.SYSTEM]
    assert render_facts({"date": "14 March"}) in system
    assert prompt.history_dropped == 2
    assert "Earlier in this chat the customer said: My booking is for the 14th of March." in system
    assert "Thanks" not in summarise([(Role.USER, "My booking is for the 14th of March. Thanks!")])
    assert render_facts({}) == "" and summarise([]) == ""


def test_few_shot_examples_come_before_the_history_and_go_before_it_does(tiny_llama: LoadedModel) -> None:
    examples = (WorkedExample("How do I return an item?", "1. Pack it. 2. Post it."),)
    builder = PromptBuilder(
        ChatFormat(tiny_llama.tokenizer), system_prompt="Be brief.", context_tokens=512, examples=examples
    )
    prompt = builder.build(history(1), Turn(Role.USER, "hi"), max_new_tokens=16)
    texts = [text for _role, text in prompt.messages]
    assert texts.index("How do I return an item?") < texts.index("1. Pack it. 2. Post it.") < len(texts) - 3
    # with knowledge-base passages, their instructions lead and the examples are left out
    grounded = builder.build(
        [], Turn(Role.USER, "hi"), max_new_tokens=16, knowledge=["[1] Refunds take 5 days."]
    )
    assert "How do I return an item?" not in [text for _role, text in grounded.messages]
    tight = PromptBuilder(
        ChatFormat(tiny_llama.tokenizer), system_prompt="Be brief.", context_tokens=120, examples=examples * 6
    )
    fitted = tight.build(history(1), Turn(Role.USER, "hi"), max_new_tokens=16)
    assert fitted.history_used == 2 and "How do I return an item?" not in [t for _r, t in fitted.messages]
