"""Domain values, the exception hierarchy and the texts people see. Imports nothing of the project."""

__all__: list[str] = []
