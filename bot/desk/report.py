"""`bot report`: one self-contained HTML file (inline SVG charts, no scripts, no external files).

Charts: messages and conversations per day, reply time per day (median from the histogram), the 👍 share
per day, the most frequent questions, and the questions the bot could not answer. Everything comes from
the analytics counters, so a report over N days reads 24·N small hashes.
"""

from __future__ import annotations

import html
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.desk.analytics import Analytics, Day, Window

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ReportData", "collect", "render_html"]

TOP = 10


@dataclass(frozen=True, slots=True)
class ReportData:
    days: list[Day]
    top_questions: list[tuple[str, int]]
    unanswered: list[tuple[str, int]]
    generated_at: float


async def collect(analytics: Analytics, days: int) -> ReportData:
    """Read what the report shows (raises StoreUnavailable when the store is down)."""
    return ReportData(
        days=await analytics.days(days),
        top_questions=await analytics.top_questions(days, TOP),
        unanswered=await analytics.unanswered_questions(days, TOP),
        generated_at=time.time(),
    )


def _svg(figure: Figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG needs neither


def _charts(data: ReportData) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "path"  # text as shapes: no font needed to view the file
    matplotlib.rcParams["text.parse_math"] = False  # labels are customers' words: "$5" is money, not TeX
    labels = [day.date[5:] for day in data.days]
    x = range(len(labels))
    charts: list[tuple[str, str]] = []

    figure, axes = plt.subplots(figsize=(8, 3))
    axes.bar(x, [d.window.messages for d in data.days], label="messages", color="#4c78a8")
    axes.plot(x, [d.window.conversations for d in data.days], "o-", label="conversations", color="#f58518")
    axes.plot(x, [d.window.handoffs for d in data.days], "s--", label="handoffs", color="#54a24b")
    _days_axis(axes, labels)
    axes.legend(loc="upper left")
    charts.append(("Messages per day", _svg(figure)))

    figure, axes = plt.subplots(figsize=(8, 3))
    medians = [d.window.median_reply_seconds for d in data.days]
    axes.plot(x, [m if m is not None else float("nan") for m in medians], "o-", color="#e45756")
    axes.set_ylabel("median reply time (s)")
    axes.set_ylim(bottom=0)
    _days_axis(axes, labels)
    charts.append(("Reply time (median per day)", _svg(figure)))

    figure, axes = plt.subplots(figsize=(8, 3))
    shares = [d.window.satisfaction for d in data.days]
    axes.plot(x, [s * 100 if s is not None else float("nan") for s in shares], "o-", color="#54a24b")
    for index, day in enumerate(data.days):
        if day.window.up or day.window.down:
            axes.annotate(f"{max(day.window.up, 0)}/{max(day.window.down, 0)}", (index, 2), ha="center")
    axes.set_ylabel("thumbs up (%)")
    axes.set_ylim(0, 105)
    _days_axis(axes, labels)
    charts.append(("Satisfaction (share of thumbs-up votes; up/down counts)", _svg(figure)))

    charts.append(("Top questions", _ranking(data.top_questions, "#4c78a8")))
    charts.append(("Questions the knowledge base could not answer", _ranking(data.unanswered, "#e45756")))
    return charts


def _days_axis(axes: Axes, labels: Sequence[str]) -> None:
    axes.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 10 else 0)


def _ranking(items: Sequence[tuple[str, int]], color: str) -> str:
    import matplotlib.pyplot as plt

    shown = list(items)[::-1]
    figure, axes = plt.subplots(figsize=(8, max(1.5, 0.4 * len(shown) + 0.6)))
    if shown:
        axes.barh(
            range(len(shown)),
            [count for _, count in shown],
            color=color,
            tick_label=[_short(t) for t, _ in shown],
        )
        axes.set_xlabel("times asked")
    else:
        axes.text(0.5, 0.5, "no data in this period", ha="center", va="center")
        axes.set_axis_off()
    return _svg(figure)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _totals(days: Sequence[Day]) -> Window:
    total = Window()
    for day in days:
        total.messages += day.window.messages
        total.replies += day.window.replies
        total.handoffs += day.window.handoffs
        total.up += day.window.up
        total.down += day.window.down
        total.unanswered += day.window.unanswered
        total.blocked += day.window.blocked
        for index, count in day.window.latency.items():
            total.latency[index] = total.latency.get(index, 0) + count
    return total


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document."""
    total = _totals(data.days)
    median, share = total.median_reply_seconds, total.satisfaction
    span = f"{data.days[0].date} to {data.days[-1].date}" if data.days else ""
    figures = [
        ("Messages", str(total.messages)),
        ("Replies", str(total.replies)),
        ("Median reply time", f"{median:.1f} s" if median is not None else "n/a"),
        ("Thumbs-up share", f"{share:.0%}" if share is not None else "n/a"),
        ("Handoffs", str(total.handoffs)),
        ("Unanswered questions", str(total.unanswered)),
        ("Safety blocks", str(total.blocked)),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in figures)
    sections = "".join(
        f'<section><h2>{html.escape(title)}</h2><div class="chart">{svg}</div></section>'
        for title, svg in _charts(data)
    )
    unanswered = "".join(
        f"<tr><td>{count}</td><td>{html.escape(text)}</td></tr>" for text, count in data.unanswered
    )
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data.generated_at))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Support report {html.escape(span)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .2rem 1rem .2rem 0; }}
.chart svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Support report</h1>
<p>{html.escape(span)} ({len(data.days)} days), generated {generated}.</p>
<table>{rows}</table>
{sections}
<section><h2>Unanswered questions (text)</h2>
<table><tr><th>times</th><th>question (as stored, personal data redacted)</th></tr>{unanswered}</table>
</section>
</body></html>
"""
