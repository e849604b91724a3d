"""`bot loadtest`: many simulated users against the real bot on loopback, to prove exactly-once replies.

Everything runs in this process and stops by itself: the fake Bot API of `bot_dev.fakes`, the bot exactly as
`bot run` starts it (PTB long polling, the service, Redis, the model) and N users who each write, wait for
the reply, pause and write again. Because a user waits for the reply before writing again, every bot
message that arrives between two of a user's messages answers the first of them: a second one is a
duplicate, none at all is a lost message. No per-message ids are needed, so nothing in the bot is touched.
"""

from __future__ import annotations

from bot_dev.loadtest.report import LoadReport
from bot_dev.loadtest.run import loadtest_settings, run_loadtest
from bot_dev.loadtest.users import FIRST_USER_ID, QUESTIONS

__all__ = ["FIRST_USER_ID", "QUESTIONS", "LoadReport", "loadtest_settings", "run_loadtest"]
