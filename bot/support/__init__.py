"""Customer-support features on top of the chat flow: the knowledge base, grounded answers, and more.

Import the modules themselves (`bot.support.index`, `bot.support.grounding`, ...): this package
re-exports nothing, so each feature stays independent of the others.
"""

from __future__ import annotations

__all__: list[str] = []
