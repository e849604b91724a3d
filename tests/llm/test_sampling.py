"""Anti-loop decoding with plain ints: the penalty and the n-gram block look at the reply only."""

from __future__ import annotations

import torch

from bot.core.domain import GenerationParams
from bot.llm.local.sampling import Sampler, blocked_by_ngrams, ngram_index


def test_an_ngram_already_in_the_reply_cannot_be_completed_again() -> None:
    assert blocked_by_ngrams([5, 6, 7, 5, 6], 3) == {7}
    assert blocked_by_ngrams([5, 6, 7, 5, 8], 3) == set()
    assert blocked_by_ngrams([1, 1, 1], 2) == {1}
    assert blocked_by_ngrams([5, 6, 7, 5, 6], 0) == set()  # off
    assert blocked_by_ngrams([5], 3) == set()


def greedy(**settings: float) -> Sampler:
    return Sampler(GenerationParams(do_sample=False, **settings), seed=None)  # type: ignore[arg-type]


def test_the_penalty_applies_to_the_reply_own_tokens_not_to_the_prompt() -> None:
    logits = torch.tensor([3.0, 2.9, 0.0, -1.0])
    sampler = greedy(repetition_penalty=1.1)
    # nothing generated yet: token 0 wins, whatever the prompt held (the sampler never sees the prompt)
    assert sampler.choose(logits)[0] == 0
    assert sampler.choose(logits)[0] == 1  # 3.0 / 1.1 < 2.9: the reply does not repeat itself
    assert greedy().choose(logits)[0] == 0 and greedy().choose(logits)[0] == 0  # 1.0 = off


def test_ngram_blocking_breaks_a_loop_within_the_reply() -> None:
    sampler = greedy(no_repeat_ngram=2)
    loop = [torch.nn.functional.one_hot(torch.tensor(t), 4).float() * 5 for t in (1, 2, 1, 2)]
    chosen = [sampler.choose(logits)[0] for logits in loop]
    assert chosen[:3] == [1, 2, 1] and chosen[3] != 2  # "1 2" already appeared: the loop is cut


def test_the_index_of_avoided_phrases_maps_each_prefix_to_the_tokens_that_would_complete_it() -> None:
    assert ngram_index([[1, 2, 3, 4], [2, 3, 9]], 3) == {(1, 2): {3}, (2, 3): {4, 9}}
    assert ngram_index([[1, 2]], 3) == {}  # shorter than n: nothing to copy
    assert ngram_index([[1, 2, 3]], 0) == {}  # off


def test_a_phrase_of_an_earlier_reply_is_not_copied_but_its_words_may_be_used() -> None:
    earlier = [[7, 8, 9, 10]]  # "... 7 8 9 10 ..." was said before
    sampler = Sampler(GenerationParams(do_sample=False, avoid_ngram=3), seed=None, avoid=earlier)
    wants = [7, 8, 9, 10]  # the model would say it again, token for token
    chosen = [sampler.choose(torch.nn.functional.one_hot(torch.tensor(t), 12).float() * 5)[0] for t in wants]
    assert chosen[:2] == [7, 8] and chosen[2] != 9  # "7 8 9" would copy a 3-token phrase: blocked
    unblocked = Sampler(GenerationParams(do_sample=False, avoid_ngram=0), seed=None, avoid=earlier)
    assert [
        unblocked.choose(torch.nn.functional.one_hot(torch.tensor(t), 12).float() * 5)[0] for t in wants
    ] == wants
