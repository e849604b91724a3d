"""The HTML report: self-contained, with a chart per question it answers, from the analytics counters."""

from __future__ import annotations

import re

from bot.desk.analytics import Analytics
from bot.desk.report import collect, render_html
from bot.storage.inprocess.desk import InProcessAnalytics

T0 = 1_700_000_000.0


async def test_report_has_five_inline_charts_and_escapes_questions() -> None:
    now = [T0 - 86_400]
    analytics = Analytics(InProcessAnalytics(), retention_days=7, clock=lambda: now[0])
    await analytics.message(1)
    await analytics.reply(1, 2.0, "How do I <b>reset</b> my password?", answered=True)
    await analytics.vote("up", "", None)
    now[0] = T0
    for chat in (1, 2):
        await analytics.message(chat)
        await analytics.reply(chat, 3.0, "Do you ship to Mars?", answered=False)
    await analytics.vote("down", "", None)
    page = render_html(await collect(analytics, 3))
    assert len(re.findall(r"<svg\b", page)) == 5
    assert "<script" not in page and "<img" not in page and "href=" not in page.split("<svg")[0]
    assert "<b>reset</b>" not in page, "question text never becomes markup"
    assert "<td>2</td><td>Do you ship to Mars?</td>" in page, "unanswered questions are listed as text"
    assert "<th>Messages</th><td>3</td>" in page and "<th>Thumbs-up share</th><td>50%</td>" in page


async def test_report_without_data_still_renders() -> None:
    page = render_html(await collect(Analytics(InProcessAnalytics(), retention_days=7), 7))
    assert page.count("<svg") == 5 and "<th>Median reply time</th><td>n/a</td>" in page


async def test_dollar_signs_in_questions_are_text_not_tex() -> None:
    analytics = Analytics(InProcessAnalytics(), retention_days=7, clock=lambda: T0)
    for question in ("price $\\foo$ ok?", "is it $5 or $10?"):  # matplotlib would parse $...$ as TeX
        await analytics.message(1)
        await analytics.reply(1, 1.0, question, answered=False)
    page = render_html(await collect(analytics, 3))
    assert page.count("<svg") == 5
