"""The knowledge base: corpus loading, retrieval (BM25 + embeddings), grounding, the index."""

__all__: list[str] = []
