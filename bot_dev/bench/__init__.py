"""`bot bench`: a reproducible benchmark of the engine against naive `generate` and llama.cpp."""

__all__: list[str] = []
