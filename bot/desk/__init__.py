"""The support desk: handoff to people, feedback, analytics and the report."""

__all__: list[str] = []
