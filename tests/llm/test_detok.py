"""Stop strings and incremental detokenisation, with plain strings and a real tokenizer."""

from __future__ import annotations

import pytest

from bot.llm.local.detok import IncrementalDecoder, StopMatcher
from bot.llm.local.loader import LoadedModel


def run(matcher: StopMatcher, pieces: list[str]) -> str:
    out = "".join(matcher.feed(p) for p in pieces)
    return out + matcher.flush()


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["Hello", " there"], "Hello there"),
        (["Hello\nUs", "er: hi"], "Hello"),
        (["Hello\n", "User", ":"], "Hello"),
        (["A\nUse", "ful tip"], "A\nUseful tip"),  # a stop-string prefix that turns out harmless
        (["\nAssistant: x"], ""),
        (["ends with a partial \nUs"], "ends with a partial \nUs"),  # flushed when the stream ends
    ],
)
def test_stop_matcher(pieces: list[str], expected: str) -> None:
    assert run(StopMatcher(["\nUser:", "\nAssistant:"]), pieces) == expected


def test_stop_matcher_holds_back_only_what_could_start_a_stop_string() -> None:
    matcher = StopMatcher(["\nUser:"])
    assert matcher.feed("Sure.\nU") == "Sure."
    assert matcher.feed("nder the sea") == "\nUnder the sea"
    assert not matcher.stopped


def test_without_stop_strings_everything_passes() -> None:
    assert run(StopMatcher([]), ["a", "b"]) == "ab"


def test_incremental_decoding_equals_decoding_all_at_once(tiny_llama: LoadedModel) -> None:
    tokenizer = tiny_llama.tokenizer
    text = "Thanks a lot 👍🏽 see you soon 👩‍👩‍👧 café naïve Привет 你好"
    ids = tokenizer.encode(text, add_special_tokens=False)
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push([token]) for token in ids]
    assert "".join(pieces) == tokenizer.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces)


def test_special_tokens_never_reach_the_text(tiny_llama: LoadedModel) -> None:
    tokenizer = tiny_llama.tokenizer
    ids = [*tokenizer.encode("Hello", add_special_tokens=False), tokenizer.eos_token_id]
    decoder = IncrementalDecoder(tokenizer)
    assert "".join(decoder.push([t]) for t in ids) == "Hello"
