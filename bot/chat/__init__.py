"""The chat flow: ChatService, its steps, the reply's safe shapes, the gate and per-chat ordering."""

__all__: list[str] = []
