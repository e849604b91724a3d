"""Test doubles for tests and `bot loadtest`: a fake Telegram Bot API server and webhook delivery."""

from bot_dev.fakes.bot_api import ApiCall, FakeBotApi

__all__ = ["ApiCall", "FakeBotApi"]
