"""Property test: every way of writing a valid test card number is redacted; Luhn-failing twins are not.

hypothesis is not a dependency, so a seeded generator writes the variants: random groupings, separators
(space, dash, dot, slash, underscore, none, mixed, padded dashes), full-width digits, and surrounding text.
"""

from __future__ import annotations

import random

import pytest

from bot.safety.pii import PiiRedactor, luhn_is_valid

TEST_PANS = (
    "4111111111111111",  # Visa
    "4012888888881881",  # Visa
    "4222222222222",  # Visa, 13 digits
    "5555555555554444",  # Mastercard
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",  # American Express
    "6011111111111117",  # Discover
    "3530111333300000",  # JCB
    "30569309025904",  # Diners Club
    "6200000000000005",  # UnionPay
)
SEPARATORS = (" ", "-", ".", "/", "_", "", " - ", "\u2013", "\uff0d", "\u3000")
CONTEXT = (
    "{}",
    "my card is {} thanks",
    "Card: {}.",
    "charge {}, please",
    "(card {})",
    "номер карты {}",
    "卡号{}",
)
CASES = 400


def _fullwidth(digits: str, rng: random.Random) -> str:
    return "".join(chr(0xFF10 + int(c)) if c.isdigit() and rng.random() < 0.5 else c for c in digits)


def write(pan: str, rng: random.Random) -> str:
    """One way a person (or a phone keyboard) might write `pan`."""
    groups, rest = [], pan
    while rest:
        size = rng.choice((4, 4, 4, 3, 5, 6, 2, 1))
        groups.append(rest[:size])
        rest = rest[size:]
    mixed = rng.random() < 0.3
    separator = rng.choice(SEPARATORS)
    text = groups[0]
    for group in groups[1:]:
        text += (rng.choice(SEPARATORS) if mixed else separator) + group
    if rng.random() < 0.3:
        text = _fullwidth(text, rng)
    return rng.choice(CONTEXT).format(text)


def twin(pan: str) -> str:
    """The same number with its check digit off by one: fails Luhn."""
    last = (int(pan[-1]) + 1) % 10
    return pan[:-1] + str(last)


def test_the_test_pans_pass_and_their_twins_fail_the_luhn_check() -> None:
    assert all(luhn_is_valid(pan) for pan in TEST_PANS)
    assert not any(luhn_is_valid(twin(pan)) for pan in TEST_PANS)


@pytest.mark.parametrize("seed", range(4))
def test_every_variant_of_a_valid_card_is_redacted(seed: int) -> None:
    rng, redactor = random.Random(seed), PiiRedactor()
    for _ in range(CASES // 4):
        pan = rng.choice(TEST_PANS)
        text = write(pan, rng)
        redacted, kinds = redactor.redact(text)
        digits = "".join(c for c in redacted if c.isdecimal())
        assert "card" in kinds and pan[-4:] not in digits, f"not redacted: {text!r} -> {redacted!r}"


@pytest.mark.parametrize("seed", range(4))
def test_luhn_failing_look_alikes_are_left_alone(seed: int) -> None:
    rng, redactor = random.Random(1000 + seed), PiiRedactor()
    for _ in range(CASES // 4):
        text = write(twin(rng.choice(TEST_PANS)), rng)
        redacted, kinds = redactor.redact(text)
        assert "card" not in kinds, f"a Luhn-failing number was taken for a card: {text!r} -> {redacted!r}"
