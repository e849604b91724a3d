"""Choosing the next token of one sequence from the model's logits, with that sequence's own settings.

The batching scheduler decodes many chats together, each with its own temperature, top-p, seed and
repetition penalty, so sampling is per row. The steps follow Hugging Face's `generate` order: repetition
penalty, then temperature, top-k and top-p, then draw (or argmax when greedy).
"""

from __future__ import annotations

import torch

from bot.core.domain import GenerationParams

__all__ = ["Sampler"]


class Sampler:
    """The sampling state of one sequence: its settings, its random generator and the tokens it has seen."""

    def __init__(self, params: GenerationParams, prompt_ids: torch.Tensor, *, seed: int | None) -> None:
        self.params = params
        self.greedy = not params.do_sample
        self._generator: torch.Generator | None = None
        if not self.greedy:
            self._generator = torch.Generator()
            if seed is not None:
                self._generator.manual_seed(seed)
            else:
                self._generator.seed()
        # the penalty looks at every token so far, the prompt's included (as `generate` does)
        self._seen = prompt_ids.clone() if params.repetition_penalty != 1.0 else None

    def choose(self, logits: torch.Tensor, *, want_logprob: bool = False) -> tuple[int, float]:
        """The next token for a 1-D row of logits, and its log-probability under the processed distribution
        (0.0 unless `want_logprob`)."""
        p = self.params
        scores = logits.float()
        if self._seen is not None:
            # repetition penalty: make every token already present less likely
            seen = scores[self._seen]
            scores = scores.scatter(
                0,
                self._seen,
                torch.where(seen < 0, seen * p.repetition_penalty, seen / p.repetition_penalty),
            )
        if self.greedy:
            token = int(torch.argmax(scores))
        else:
            # temperature: < 1 sharpens the distribution, > 1 flattens it
            scores = scores / max(p.temperature, 1e-5)
            # top-k: keep only the k most likely tokens
            if 0 < p.top_k < scores.numel():
                kth = torch.topk(scores, p.top_k).values[-1]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            # top-p: keep the smallest set of tokens whose probabilities add up to p
            if p.top_p < 1.0:
                ordered, order = torch.sort(scores, descending=True)
                cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
                drop = cumulative - torch.softmax(ordered, dim=-1) >= p.top_p  # always keeps the first
                scores = scores.scatter(0, order[drop], float("-inf"))
            # draw from what is left
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self._generator))
        if self._seen is not None:
            self._seen = torch.cat([self._seen, torch.tensor([token], dtype=self._seen.dtype)])
        if not want_logprob:
            return token, 0.0
        return token, float(torch.log_softmax(scores, dim=-1)[token])
