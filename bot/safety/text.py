"""Unicode hygiene for incoming text, and the folded "skeleton" that detectors match against.

`clean` is what goes on to the model and storage: NFKC, minus bidi overrides, invisible tag characters
and zero-width characters used to hide words, while emoji ZWJ sequences, flag tag sequences, ZWNJ and
right-to-left text are kept. `skeleton` is only for matching: case-folded, leetspeak undone, spaced or
dotted letters joined, long letter runs shortened, confusable letters (Cyrillic and Greek look-alikes, small
capitals) folded to Latin, so "I g n 0 r e", "fuuuck" and "іgnоrе" (Cyrillic і, о, е) are seen for what
they are. Full-width and mathematical alphanumerics (𝐢𝐠𝐧𝐨𝐫𝐞) are already Latin after NFKC. `visible_text`
says whether a message has anything a person could read (whitespace, zero-width and control characters do
not count).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "fold_confusables", "is_blank", "semantic_view", "skeleton", "skeletons", "visible_text"]

_BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE = "\u200b\u2060\ufeff\u00ad\u180e"
_FLAG_TAGS = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")
_TAGS = re.compile("[\U000e0000-\U000e007f]")
_DROP = re.compile(f"[{_BIDI_CONTROLS}{_INVISIBLE}]")
_ZWJ = "\u200d"

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_DOTTED = re.compile(r"\b(?:\w[.\-_*]){2,}\w\b")  # s.h.i.t, f-u-c-k
_SPACED = re.compile(r"\b(?:\w ){2,}\w\b")  # i g n o r e
_RUNS = re.compile(r"(\w)\1{2,}")  # fuuuuck -> fuck (runs of three or more)
_WHITESPACE = re.compile(r"\s+")
# C0 and C1 controls other than tab, line feed and carriage return: NUL bytes and terminal escapes never
# reach the model or the history
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# characters that render as nothing although Unicode calls them letters or symbols (Hangul fillers,
# braille blank)
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")

# Lower-case look-alikes of Latin letters (after casefold), from Unicode's confusables data: Cyrillic, Greek,
# and Latin small capitals / IPA letters.
_CONFUSABLES: dict[str, str] = dict(
    re.findall(
        r"(\S)(\S)",
        "аa вb сc ԁd еe ёe һh іi їi јj ӏl кk мm нh оo рp ԛq ѕs тt уy ўy ԝw хx үy ѵv "  # Cyrillic
        "αa βb εe ηn ιi κk νv οo ρp τt υu χx γy ωw ϲc ϳj "  # Greek
        "ᴀa ʙb ᴄc ᴅd ᴇe ғf ɢg ʜh ɪi ᴊj ᴋk ʟl ᴍm ɴn ᴏo ᴘp ʀr ꜱs ᴛt ᴜu ᴠv ᴡw ʏy ᴢz ɡg ɑa ıi",  # small capitals
    )
)
_CONFUSABLES |= {
    k.upper(): v.upper() for k, v in _CONFUSABLES.items() if k.upper() != k and not k.upper().isascii()
}
_FOLD = str.maketrans(_CONFUSABLES)
_LETTERS = re.compile(r"[^\W\d_]+")


def _is_emoji(char: str) -> bool:
    return unicodedata.category(char) == "So" or 0x1F000 <= ord(char) <= 0x1FAFF or char in "\ufe0f\u20e3"


def clean(text: str) -> str:
    """NFKC-normalised text without hidden controls; legitimate emoji sequences and RTL text survive."""
    flags: dict[str, str] = {}

    def keep_flag(match: re.Match[str]) -> str:
        key = f"\x00{len(flags)}\x00"
        flags[key] = match.group(0)
        return key

    text = _FLAG_TAGS.sub(keep_flag, _CONTROLS.sub("", text))
    text = _TAGS.sub("", _DROP.sub("", text))
    if _ZWJ in text:  # keep a joiner only between emoji (family, profession, flag sequences)
        chars = list(text)
        text = "".join(
            c
            for i, c in enumerate(chars)
            if c != _ZWJ or (0 < i < len(chars) - 1 and _is_emoji_near(chars, i))
        )
    text = unicodedata.normalize("NFKC", text)
    for key, flag in flags.items():
        text = text.replace(key, flag)
    return text


def _is_emoji_near(chars: list[str], index: int) -> bool:
    before = chars[index - 1]
    if 0x1F3FB <= ord(before) <= 0x1F3FF or before == "\ufe0f":  # skin tone or presentation selector
        return True
    return _is_emoji(before) and _is_emoji(chars[index + 1])


def skeleton(text: str) -> str:
    """A folded form for matching only (never shown or stored)."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace(_ZWJ, "").replace("\u200c", "")
    folded = fold_confusables(folded)
    folded = _DOTTED.sub(
        lambda m: re.sub(r"[.\-_*]", "", m.group(0)) if _single_letters(m.group(0)) else m.group(0), folded
    )
    folded = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), folded)
    folded = _WHITESPACE.sub(" ", folded)
    folded = folded.translate(_LEET)
    return _RUNS.sub(r"\1", folded)


_LEET_TOKEN = re.compile(r"[\w@$]+")


def semantic_view(text: str) -> str:
    """The text the sentence-embedding detector reads: cleaned, look-alikes folded, spaced or dotted
    letters joined, leetspeak undone in words that mix letters and digits; case and numbers kept (order
    numbers and prices mean something), so it stays readable English for the model."""
    view = fold_confusables(clean(text))
    view = _DOTTED.sub(
        lambda m: re.sub(r"[.\-_*]", "", m.group(0)) if _single_letters(m.group(0)) else m.group(0), view
    )
    view = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), view)
    return _WHITESPACE.sub(" ", _LEET_TOKEN.sub(_unleet, view)).strip()


def _unleet(match: re.Match[str]) -> str:
    """'y0u', 'a$$hole', 'b0t' read as words; '12345', '$40' and 'hello' stay as they are."""
    token = match.group(0)
    has_letter = any(c.isalpha() for c in token)
    return token.translate(_LEET) if has_letter and any(c in "013457@$" for c in token) else token


def fold_confusables(text: str) -> str:
    """Look-alike letters folded to Latin where the writer meant Latin, for matching only.

    A word that mixes Latin and look-alike letters ("іgnоrе") is folded; a word made only of look-alikes
    ("рое") is folded when the message is otherwise Latin. Genuine Cyrillic or Greek text keeps its
    letters, so Russian rules still see Russian words.
    """
    if not any(c in _CONFUSABLES for c in text):
        return text
    latin = sum(1 for c in text if "a" <= c <= "z" or "A" <= c <= "Z")
    foreign = sum(1 for c in text if c.isalpha() and not c.isascii() and c not in _CONFUSABLES)
    latin_text = latin > foreign

    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        if not any(c in _CONFUSABLES for c in word):
            return word
        mixed = any(c.isascii() for c in word)
        only_lookalikes = all(c in _CONFUSABLES or c.isascii() for c in word)
        return word.translate(_FOLD) if only_lookalikes and (mixed or latin_text) else word

    return _LETTERS.sub(fold, text)


def visible_text(text: str) -> str:
    """What a person would see: the text without whitespace, format, control and blank-looking characters.

    An empty result means the message has nothing to answer (spaces, zero-width characters, NUL bytes).
    """
    return "".join(
        c
        for c in text
        if not c.isspace()
        and c not in _BLANK_LOOKING
        and unicodedata.category(c) not in ("Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me", "Co", "Cn", "Cs")
    )


def is_blank(text: str) -> bool:
    """True when a message has no visible content at all."""
    return not visible_text(text)


def skeletons(text: str) -> tuple[str, ...]:
    """The skeleton, plus a variant reading "1" as "l" (leetspeak uses it for both: "ru13s", "1gn0re")."""
    folded = skeleton(text)
    if "1" not in text:
        return (folded,)
    return folded, skeleton(text.replace("1", "l"))


def _single_letters(chain: str) -> bool:
    """'f.u.c.k' is a hidden word; '2.14.0' and 'e-mail' are not."""
    parts = re.split(r"[.\-_*]", chain)
    return all(len(part) == 1 for part in parts) and any(part.isalpha() for part in parts)
