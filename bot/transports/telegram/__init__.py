"""The Telegram transport: PTB application, handlers, streaming delivery, webhook receiver, lifecycle."""

__all__: list[str] = []
