"""Test doubles that ship with the package: a fake Telegram Bot API server for tests and `bot loadtest`."""

from bot_dev.fakes.bot_api import ApiCall, FakeBotApi

__all__ = ["ApiCall", "FakeBotApi"]
