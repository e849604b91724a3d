"""Developer tools kept out of the product package: benchmark, load test, evaluations, test doubles."""

__all__: list[str] = []
