"""What every settings section shares: the base class and the parsing of comma-separated id lists."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["IdSet", "Section", "id_set"]

IdSet = Annotated[frozenset[int], NoDecode]


def id_set(value: Any) -> Any:
    """'1, 2,3' -> {1, 2, 3}; the error names the item that is not an integer id."""
    if not isinstance(value, str):
        return value
    ids = set()
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            ids.add(int(item))
        except ValueError:
            raise ValueError(f"{item!r} is not a numeric Telegram id (expected e.g. 12345,-100987)") from None
    return frozenset(ids)


class Section(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True, validate_default=True)
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def env_name(cls, field: str) -> str:
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()
