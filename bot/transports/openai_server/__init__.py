"""`bot serve-model`: an OpenAI-compatible HTTP server over any Engine."""

__all__: list[str] = []
