"""Choosing the next token of one sequence from the model's logits, with that sequence's own settings.

The batching scheduler decodes many chats together, each with its own temperature, top-p, seed and
penalties, so sampling is per row. The steps follow Hugging Face's `generate` order: repetition penalty
and n-gram blocking, then temperature, top-k and top-p, then draw (or argmax when greedy).

Unlike `generate`, both anti-loop measures look at the reply's own tokens only: HF's repetition penalty
also punishes every word of the prompt (the customer's name, the product asked about), which is why it
used to be off; a reply that loops repeats *itself*, so that is what is penalised and blocked.

A small model also parrots what it said earlier in the chat ("I'm sorry for any confusion. Please find it
on your doorstep!" twice, a "P.S." tacked on every reply): with `avoid_ngram` set, no phrase of that many
tokens from the `avoid` sequences (the token ids of the chat's earlier replies) is copied.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bot.core.domain import GenerationParams

__all__ = ["Sampler", "blocked_by_ngrams", "ngram_index"]


def blocked_by_ngrams(generated: Sequence[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in `generated` (as HF's no_repeat_ngram_size,
    over the reply only). With n = 3 and a reply ... a b c ... a b, the token c is blocked."""
    if n <= 0 or len(generated) < n:
        return set()
    tail = tuple(generated[len(generated) - n + 1 :])
    return {
        generated[i + n - 1] for i in range(len(generated) - n + 1) if tuple(generated[i : i + n - 1]) == tail
    }


def ngram_index(sequences: Sequence[Sequence[int]], n: int) -> dict[tuple[int, ...], set[int]]:
    """For each (n-1)-token prefix found in `sequences`, the tokens that follow it there: the tokens that
    would complete one of their n-grams."""
    index: dict[tuple[int, ...], set[int]] = {}
    if n <= 0:
        return index
    for seq in sequences:
        for i in range(len(seq) - n + 1):
            index.setdefault(tuple(seq[i : i + n - 1]), set()).add(seq[i + n - 1])
    return index


class Sampler:
    """The sampling state of one sequence: its settings, its random generator and its reply so far."""

    def __init__(
        self, params: GenerationParams, *, seed: int | None, avoid: Sequence[Sequence[int]] = ()
    ) -> None:
        self.params = params
        self._avoid = ngram_index(avoid, params.avoid_ngram)
        self.greedy = not params.do_sample
        self._generator: torch.Generator | None = None
        if not self.greedy:
            self._generator = torch.Generator()
            if seed is not None:
                self._generator.manual_seed(seed)
            else:
                self._generator.seed()
        self.generated: list[int] = []

    def choose(self, logits: torch.Tensor, *, want_logprob: bool = False) -> tuple[int, float]:
        """The next token for a 1-D row of logits, and its log-probability under the processed distribution
        (0.0 unless `want_logprob`)."""
        p = self.params
        scores = logits.float()
        if p.repetition_penalty != 1.0 and self.generated:
            # repetition penalty: make every token the reply already used less likely
            seen = torch.tensor(sorted(set(self.generated)), dtype=torch.long)
            old = scores[seen]
            penalised = torch.where(old < 0, old * p.repetition_penalty, old / p.repetition_penalty)
            scores = scores.scatter(0, seen, penalised)
        # n-gram blocking: never repeat a phrase of no_repeat_ngram tokens within the reply, nor copy one of
        # avoid_ngram tokens from the chat's earlier replies
        blocked = blocked_by_ngrams(self.generated, p.no_repeat_ngram)
        if self._avoid and len(self.generated) >= p.avoid_ngram - 1:
            tail = tuple(self.generated[len(self.generated) - p.avoid_ngram + 1 :])
            blocked |= self._avoid.get(tail, set())
        if blocked:
            scores = scores.index_fill(0, torch.tensor(sorted(blocked), dtype=torch.long), float("-inf"))
        if self.greedy:
            token = int(torch.argmax(scores))
        else:
            token, scores = self._draw(scores)
        self.generated.append(token)
        if not want_logprob:
            return token, 0.0
        return token, float(torch.log_softmax(scores, dim=-1)[token])

    def _draw(self, scores: torch.Tensor) -> tuple[int, torch.Tensor]:
        p = self.params
        # temperature: < 1 sharpens the distribution, > 1 flattens it
        scores = scores / max(p.temperature, 1e-5)
        # top-k: keep only the k most likely tokens
        if 0 < p.top_k < scores.numel():
            kth = torch.topk(scores, p.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        # top-p: keep the smallest set of tokens whose probabilities add up to p
        if p.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            drop = probs.cumsum(dim=-1) - probs >= p.top_p  # always keeps the first
            scores = scores.scatter(0, order[drop], float("-inf"))
        # draw from what is left
        token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self._generator))
        return token, scores
