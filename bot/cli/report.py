"""`bot report`: an HTML report of the support analytics the bot kept in Redis (no model is loaded)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bot.cli.common import Commands, fail, positive, setup_logging
from bot.config import Settings

__all__ = ["ORDER", "register", "run"]

ORDER = 60


def register(commands: Commands) -> argparse.ArgumentParser:
    report = commands.add_parser(
        "report", help="write an HTML report of support analytics (messages, reply time, feedback, questions)"
    )
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.add_argument(
        "--days", type=positive(int), default=7, help="how many days back, today included (default: 7)"
    )
    return report


def run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.desk.report import render_html

    setup_logging(settings)
    data = asyncio.run(_report_data(settings, args.days))
    try:
        args.out.write_text(render_html(data), encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot write {args.out}: {exc.strerror or exc}")
    print(f"wrote {args.out} ({args.days} days, {sum(day.window.messages for day in data.days)} messages)")
    return 0


async def _report_data(settings: Settings, days: int) -> Any:
    from bot.app import open_stores
    from bot.desk.analytics import Analytics
    from bot.desk.report import collect

    async with open_stores(settings) as state:
        assert state.support is not None  # both backends keep analytics
        retention = settings.support.analytics_retention_days
        return await collect(Analytics(state.support.analytics, retention_days=retention), days)
