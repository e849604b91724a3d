"""How people reach the service: Telegram, the terminal, an OpenAI-compatible server, health."""

__all__: list[str] = []
