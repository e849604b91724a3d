"""Redis stores: the only package that imports redis."""

__all__: list[str] = []
