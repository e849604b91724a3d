"""Profanity and abuse.

Vocabulary: the multilingual word lists of the maintained `glin-profanity` package (read as data), minus
words that are ordinary in another supported language ("con", "bitte"), plus insults and threats that
profanity lists leave out. Matching is by whole words and phrases on the folded skeleton, so
"Scunthorpe", "assassin" or "kill some time" stay clean while "sh1t", "f.u.c.k" and "f***" do not.

Support is about frustrated people, so swearing at a situation ("WTF happened to my bill", "this crap
app") is reported as mild `profanity`; swearing aimed at someone ("f*** you"), severe slurs, insults and
threats are `abuse`. Admins choose an action for each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from glin_profanity.data.dictionary import DictionaryLoader

from bot.safety.text import skeleton

__all__ = ["ProfanityDetector"]

LANGUAGES = ("english", "german", "spanish", "french", "russian", "chinese")

# Ordinary words in one supported language that a list of another one contains.
_COLLISIONS = {
    "con",
    "bitte",
    "folle",
    "veuve",
    "gol",
    "byk",
    "mufti",
    "nackt",
    "bonze",
    "popel",
    "kimme",
    "trio",
    "asno",
    "orina",
    "pis",
    "xx",
    "bs",
    "mf",
    "simp",
    "semen",
    "sexo",
    "sex",
    "nude",
    "gerbe",
    "teuf",
    "meuf",
    "jouir",
    "péter",
    "pipi",
    "caca",
    "бугор",
    "мент",
    "фига",
    "голый",
    "секс",
    "suck",
    "sucks",
}
# Always abuse, whoever they are aimed at.
_SEVERE = (
    r"cunt|motherfuck\w*|nigg\w*|kike|spic|faggot|fag|retard(?:ed)?|whore|slut|fotze|hurensohn|wichser|"
    r"hijo de puta|hijoputa|puta madre|cabrón|cabron|pendejo|gilipollas|enculé|encule|salope|fils de pute|"
    r"connard|connasse|блядь|бляд\w*|хуй\w*|хуе\w*|пизд\w*|сука|уёб\w*|ебан\w*|мудак\w*"
)
_SECOND_PERSON = (
    r"you|u|ya|your|ur|yourself|you're|youre|y'all|bot|du|dich|dir|dein\w*|ihr|euch|tú|tu|te|ti|usted|ustedes|"
    r"vosotros|eres|sois|toi|vous|ты|тебя|тебе|вы|вас|твой|ваш\w*"
)
# Name-calling that is abuse wherever it appears (unless the writer calls themself one: "I feel like an idiot").
_NAMES = (
    r"idiots?|morons?|imbeciles?|cretins?|dickheads?|dumbass\w*|jackass\w*|assholes?|arseholes?|bastards?|"
    r"wankers?|twats?|douche\w*|scumbags?|bitch\w*|losers?|halfwits?|numpty|numpties|pricks?|dipshits?|shitheads?|"
    r"dumme kuh|blöde kuh|dumme sau|mistkerl|schlampe|"
    r"vollidiot\w*|idioten|arschl[oö]ch\w*|trottel|idiotas?|imbéciles?|imbécil|inútil|abruti\w*|connards?|"
    r"идиот\w*|дебил\w*|мудак\w*|урод\w*|мраз\w*"
)
# Words that insult only when aimed at someone: "you are useless", not "the useless button".
_INSULTS = (
    _NAMES + r"|clowns?|scum|trash|garbage|slobs?|brain-?dead|dumbest|stupidest|useless|worthless|pathetic|"
    r"incompetent|liars?|thieves|crooks?|penner|estúpid\w*|crétins?|débiles?|nuls|тупо\w*|сволоч\w*|козл\w*"
)
_ABUSE = [
    rf"\b(?:{_SECOND_PERSON})\b(?:\W+\w+){{0,3}}?\W+(?:{_INSULTS})\b",
    rf"\b(?:you people|bunch of|band of|bande d'|pack of|lot of you|all of you)\b[^.!?\n]{{0,30}}\b(?:{_INSULTS})\b",
    rf"(?:^|[.!?]\s+)\W*(?:\w+\W+){{0,2}}(?:{_INSULTS})\W*(?:\w+\W*)?(?:[.!?]|$)",  # outbursts: "Brain-dead trash."
    r"\b(?:stupid|useless|worthless|pathetic|dumb|lazy|incompetent)\s+(?:\w+\s+)?(?:bot|machine|piece|company|staff|people|manager|agent|idiots?|morons?|slob|code)\b",
    r"\b(?:shut (?:the \w+ )?up|stfu|screw you|go to hell|get lost|drop dead|kys|kill yourself|go die|piss off|fuck off|f off|sod off|bugger off|eat shit|suck my)\b",
    r"\bi(?:'ll| will| am going to|'m going to|m gonna|'m gonna| gonna| shall)\s+(?:\w+\s+){0,2}(?:find|kill|hurt|beat|destroy|murder|stab|shoot|smash|break|punch|burn|ruin|come for|make your life hell|post your)",
    r"\b(?:you(?:'re| are) (?:dead|going to die|gonna die)|watch your back|know where (?:you|she|he|they) lives?|pay (?:you|her|him|them) a (?:little )?visit)\b",
    r"\b(?:hope|wish)\b[^.!?\n]{0,40}\b(?:die|dies|burn|burns|rot|rots|get hurt|suffer)\b",
    r"\bshould be (?:fired and )?(?:beaten|shot|killed|hanged|hung|punched|hurt)\b",
    r"\b(?:make sure they get harassed|get harassed)\b",
    r"\bhope (?:someone|somebody|they) (?:waits? for|gets?|finds?|hurts?|beats?|teaches?) (?:him|her|you|them)\b",
    r"\buntil (?:she|he|you|they) (?:begs?|cr(?:y|ies)|quits?|breaks? down|kills? (?:her|him)self)\b",
    r"\bi(?:'m| am|'ll| will) (?:going to |gonna )?(?:message|call|text|e-?mail|follow|stalk|spam|harass|dox) (?:her|him|you|them) (?:every|all day|until|day and night)",
    r"\bi found (?:your|her|his) [^.!?\n]{0,30}\b(?:instagram|facebook|home address|address|house)\b",
    r"\bwenn ich (?:dich|die|den|ihn|sie|euch) erwische\b|\bkann (?:sie|er|der|die) was erleben\b",
    r"\bich (?:finde|kriege|erwische|töte|bringe|mach) dich\b|\bgnade dir gott\b|\bhalt (?:die|deine) (?:fresse|klappe)\b",
    r"\bte voy a (?:encontrar|matar|buscar|partir|romper)\b|\bvete a la mierda\b|\bcállate\b|\bcallate\b|\bde mierda\b",
    r"\bje vais te (?:trouver|tuer|défoncer|retrouver|casser)\b|\bta gueule\b|\bva te faire\b",
    r"(?:найду тебя|убью тебя|достану тебя|тебе не поздоровится|заткнись|нахуй|нахер|пош[её]л на х|пош[её]л ты)",
]
_NAME_CALLING = re.compile(rf"\b(?:{_NAMES})\b")
_SELF_FRAMED = re.compile(
    r"\b(?:i|i'm|im|i am|me|myself|feel|felt|like|such|what)\b(?:\s+(?:a|an|an absolute|a complete|total))?\s*$"
)
_STARRED = [  # f***, sh*t, b***h, motherf***er: starred-out words still count
    (re.compile(r"\bmotherf[\W_]*\w*er\b"), "motherfucker"),
    (re.compile(r"\bf[*#@%]+(?:c?k)?(?:ing|in|er|ed)?(?!\w)|\bf[*#]ck\w*|\bfu[*#]+k?\w*"), "fuck"),
    (re.compile(r"\bsh[*#]+t\w*|\bs[*#]{2,}t\b"), "shit"),
    (re.compile(r"\bb[*#]+(?:tch|ch|h)\w*"), "bitch"),
]


_TOKEN = re.compile(r"\w+(?:[-']\w+)*")
_YOU = re.compile(rf"^(?:{_SECOND_PERSON})$")


class ProfanityDetector:
    def __init__(self, extra_terms: Iterable[str] = ()) -> None:
        loader = DictionaryLoader()
        entries: set[str] = set()
        for language in LANGUAGES:
            entries.update(w.casefold() for w in loader.get_words(language))
        entries = {w for w in entries if w not in _COLLISIONS} | {t.casefold() for t in extra_terms}
        # list entries go through the same folding as messages ("a$$" -> "ass"), then split by shape:
        # single words are looked up in a set, phrases and CJK (no spaces) by one regex
        folded = {skeleton(w) for w in entries}
        cjk = sorted((w for w in folded if _is_cjk(w) and len(w) > 1), key=len, reverse=True)
        latin = folded.difference(cjk)
        self._single = {w for w in latin if _TOKEN.fullmatch(w)}
        # multi-word phrases, looked up as n-grams of the message's tokens
        self._phrases = {
            " ".join(_TOKEN.findall(w)) for w in latin - self._single if len(_TOKEN.findall(w)) > 1
        }
        self._phrase_sizes = sorted({p.count(" ") + 1 for p in self._phrases})
        self._cjk = re.compile("|".join(re.escape(w) for w in cjk))
        self._severe = re.compile(rf"(?<!\w)(?:{_SEVERE})(?!\w)")
        self._abuse = re.compile("|".join(f"(?:{p})" for p in _ABUSE), re.MULTILINE)

    def detect(self, text: str) -> list[str]:
        """[] or ["profanity"] (mild, aimed at nobody) or ["abuse"]."""
        folded = skeleton(text)
        for pattern, word in _STARRED:
            folded = pattern.sub(word, folded)
        raw = text.casefold()
        if (
            self._abuse.search(folded)
            or (raw != folded and self._abuse.search(raw))
            or self._severe.search(folded)
        ):
            return ["abuse"]
        for match in _NAME_CALLING.finditer(folded):  # "you idiot", but not "I feel like an idiot"
            if not _SELF_FRAMED.search(folded[max(0, match.start() - 24) : match.start()]):
                return ["abuse"]
        tokens = _TOKEN.findall(folded)
        hits = [i for i, token in enumerate(tokens) if token in self._single]
        if not hits:
            return ["profanity"] if self._has_phrase(tokens) or self._has_cjk(folded) else []
        # aimed at someone: a second-person word ("you", "du", "ты", "bot") within three words
        for i in hits:
            if any(_YOU.match(tokens[j]) for j in range(max(0, i - 3), min(len(tokens), i + 4)) if j != i):
                return ["abuse"]
        return ["profanity"]

    def _has_phrase(self, tokens: list[str]) -> bool:
        return any(
            " ".join(tokens[i : i + size]) in self._phrases
            for size in self._phrase_sizes
            for i in range(len(tokens) - size + 1)
        )

    def _has_cjk(self, text: str) -> bool:
        return any("\u3040" <= c <= "\u9fff" for c in text) and bool(self._cjk.search(text))

    def mask(self, text: str) -> str:
        """The text with profane words starred out (for SAFETY_PROFANITY_ACTION=redact)."""
        return _TOKEN.sub(
            lambda m: _star(m.group(0)) if skeleton(m.group(0)) in self._single else m.group(0), text
        )


def _star(word: str) -> str:
    return word[0] + "*" * (len(word) - 1)


def _is_cjk(word: str) -> bool:
    return any("\u3040" <= c <= "\u9fff" for c in word)
