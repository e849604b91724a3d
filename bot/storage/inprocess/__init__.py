"""In-process stores with the Redis stores' behaviour (REDIS_URL=memory://)."""

__all__: list[str] = []
