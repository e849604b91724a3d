"""Ranking passages for a question: BM25 always, embeddings when available, fused by reciprocal rank.

BM25 is a few dozen lines over a knowledge base of tens to thousands of passages, so it is written out
here rather than pulled in with a sparse-matrix library. Words are lower-cased, stop words dropped and
stemmed (Snowball), so "shipped", "shipping" and "ships" meet. Confidence is not the fused score (ranks
say nothing about absolute relevance) but `coverage`: how much of the question's informative weight the
best passage contains (damped when the question is mostly words the documents never use), or the
embedding similarity when that is higher.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import snowballstemmer

from bot.knowledge.base import Hit, Passage, Retrieval

__all__ = [
    "CORROBORATION",
    "PHRASES",
    "QUESTION_WEIGHT",
    "RRF_K",
    "STOPWORDS",
    "SYNONYMS",
    "Bm25",
    "Retriever",
    "contact_terms",
    "is_small_talk",
    "names",
    "terms",
]

# a lexical match on a minority of the question's words ("help me write a poem" shares only "help") is
# believed only as far as the passage's meaning agrees: its coverage is scaled by cosine / CORROBORATION
CORROBORATION = 0.4
QUESTION_WEIGHT = 0.25  # a word of a passage's doc2query questions counts a quarter of a word of its text
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.): damps the weight of the top ranks

STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my myself no nor not now of off on once
    only or other our ours out over own same she should so some such than that the their theirs them then
    there these they this those through to too under until up very was we were what when where which while
    who whom why will with would you your yours yourself yourselves hello hi hey thanks thank thx please ok
    okay bye goodbye good morning afternoon evening great cool yes yeah sure tell know want need get got
    let us s t d ll m re ve i'm don't can't there's one much many long often way possible able like anything
    something someone thing still already really actually exactly ever take takes taking make makes use
    used go goes went through didn't doesn't isn't wasn't won't haven't hasn't i've i'd you're it's what's
    happens happen going gonna""".split()  # noqa: SIM905 (reads best)
)
# Customers and documents name the same thing differently. Each group is read as its first word, in the
# documents and in questions alike: generic support vocabulary, not any one company's.
SYNONYMS = (
    "ship deliver delivery shipping dispatch postage",
    "cost price fee charge cheap cheaper expensive",
    "standard normal regular usual",
    "pay payment debit",
    "warranty guarantee",
    "card visa mastercard maestro amex",
    "return",
    "refund reimburse reimbursement",
    "email mail",
    "phone telephone call ring",
    "wood wooden",
    "shop store showroom",
    "damaged broken defect defective faulty",
    "invoice receipt bill",
    "discount coupon promo",
    "install installation setup",
    "parcel",
    "person human agent representative operator",
)
# phrases first, before single words: "how much" asks for a cost, "send back" means return
PHRASES = {
    "how much": "cost",
    "send back": "return",
    "send it back": "return",
    "give back": "return",
    "bring back": "return",
    "money back": "refund",
    "pay for": "cost",
    "phone number": "phone",
    "telephone number": "phone",
    "set up": "install",
    "setting up": "install",
    "hook up": "install",
    "e-mail": "email",
    "log in": "login",
    "sign in": "login",
    # holidays by name and by date are the same day (documents say one, customers the other)
    "christmas eve": "24 december",
    "christmas day": "25 december",
    "boxing day": "26 december",
    "new year's eve": "31 december",
    "new years eve": "31 december",
    "new year's day": "1 january",
    "new years day": "1 january",
}
_PHRASE = re.compile(r"\b(" + "|".join(re.escape(p) for p in PHRASES) + r")\b")
_SEND_BACK = re.compile(r"\b(?:send|bring|give)(?: \w+){1,2} back\b")  # "send the sofa back" -> return
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+\b")  # a capitalised word not opening a sentence
_SMALL_TALK_EXTRA = frozenset({"help", "anyone", "bot", "assistant", "nice", "day", "lol", "wow", "awesome"})
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_stemmer = snowballstemmer.stemmer("english")
_PHONE_LIKE = re.compile(r"\+\d[\d ().-]{6,}\d|\(?\b0\d[\d ().-]{6,}\d")
_EMAIL_LIKE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


@lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    if word.isdigit():
        return word
    stem = str(_stemmer.stemWord(word))
    return _CANONICAL.get(stem, stem)


_CANONICAL = {
    str(_stemmer.stemWord(word)): str(_stemmer.stemWord(group.split()[0]))
    for group in SYNONYMS
    for word in group.split()[1:]
}


def terms(text: str) -> list[str]:
    """The informative, stemmed words of `text`, in order (digits kept as they are)."""
    text = _SEND_BACK.sub("return", _PHRASE.sub(lambda m: PHRASES[m.group()], text.lower()))
    return [_stem(w) for w in _WORD.findall(text) if w not in STOPWORDS]


def is_small_talk(text: str) -> bool:
    """A greeting or thanks with nothing to look up ("hi!", "thanks a lot", "ok bye")."""
    words = _WORD.findall(text.lower())
    return all(w in STOPWORDS or w in _SMALL_TALK_EXTRA for w in words)


def contact_terms(text: str) -> list[str]:
    """A passage that gives a phone number or an e-mail address answers "what's your phone/e-mail"."""
    found = ["phone"] if _PHONE_LIKE.search(text) else []
    return found + (["email"] if _EMAIL_LIKE.search(text) else [])


class Bm25:
    """Okapi BM25 over pre-tokenised documents (k1 = 1.5, b = 0.75, the usual defaults)."""

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75) -> None:
        self._k1, self._b = k1, b
        self._lengths = [len(doc) for doc in documents]
        self._average = (sum(self._lengths) / len(documents)) if documents else 0.0
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for index, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                self._postings.setdefault(term, []).append((index, count))
        self._size = len(documents)

    def idf(self, term: str) -> float:
        """Rarer terms weigh more; a term the knowledge base never uses weighs most of all."""
        df = len(self._postings.get(term, ()))
        return math.log(1 + (self._size - df + 0.5) / (df + 0.5))

    def knows(self, term: str) -> bool:
        return term in self._postings

    def scores(self, query: Sequence[str]) -> dict[int, float]:
        """BM25 score of every document sharing a term with the query (the others score 0)."""
        found: dict[int, float] = {}
        for term in set(query):
            idf = self.idf(term)
            for index, count in self._postings.get(term, ()):
                norm = 1 - self._b + self._b * self._lengths[index] / (self._average or 1)
                gain = idf * count * (self._k1 + 1) / (count + self._k1 * norm)
                found[index] = found.get(index, 0.0) + gain
        return found


class Retriever:
    """Hybrid search over one version of the knowledge base; immutable, so a reload swaps it whole."""

    def __init__(
        self,
        passages: Sequence[Passage],
        vectors: np.ndarray | None = None,
        sentence_vectors: Sequence[np.ndarray] | None = None,
        questions: Sequence[Sequence[str]] | None = None,
        question_vectors: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.passages = tuple(passages)
        # doc2query: questions each passage answers, matched like its own words (never shown or quoted)
        self.questions = tuple(tuple(q) for q in questions) if questions is not None else None
        asked = self.questions or ((),) * len(self.passages)
        self._terms = [
            terms(f"{p.title} {p.section} {p.text}") + contact_terms(p.text) for p in self.passages
        ]
        self._term_sets = [frozenset(t) for t in self._terms]
        # confidence and the answer's sentences weigh words by the documents alone; ranking also counts
        # the words of the passages' questions (at QUESTION_WEIGHT), so a customer's other wording finds it
        self.bm25 = Bm25(self._terms)
        self._asked = Bm25([terms(" ".join(q)) for q in asked]) if self.questions is not None else None
        self.vectors = vectors  # (passages, dimensions), rows of unit length
        # per passage, (sentences, dimensions): one row per `sentences(passage.text)`, for answer extraction
        self.sentence_vectors = tuple(sentence_vectors) if sentence_vectors is not None else None
        self._question_vectors = tuple(question_vectors) if question_vectors is not None else None

    def search(
        self, question: str, *, top_k: int, min_score: float, query_vector: Sequence[float] | None = None
    ) -> Retrieval:
        if is_small_talk(question):
            return Retrieval(small_talk=True)
        query = terms(question)
        # coverage: the share of the question's known words (weighted by rarity) that a passage has, damped
        # by the share of its words the knowledge base knows at all ("weather in Paris" knows none)
        weights = {term: self.bm25.idf(term) for term in set(query) if self.bm25.knows(term)}
        total = sum(weights.values()) or 1.0
        known = math.sqrt(len(weights) / len(set(query))) if query else 0.0
        if weights and set(weights) <= names(question) and len(weights) < len(set(query)):
            # only a name is known ("the weather in Rotterdam tomorrow"): the question is about something else
            known = 0.0
        lexical = self.bm25.scores(query)
        if self._asked is not None:
            for index, score in self._asked.scores(query).items():
                lexical[index] = lexical.get(index, 0.0) + QUESTION_WEIGHT * score
        rankings = [sorted(lexical, key=lambda i: -lexical[i])]
        similarity: np.ndarray | None = None
        if self.vectors is not None and query_vector is not None and len(self.passages):
            vector = np.asarray(query_vector, dtype=np.float32)
            similarity = self.vectors @ vector
            rankings.append([int(i) for i in np.argsort(-self._similarity(vector, similarity))])
        fused: dict[int, float] = {}
        for ranking in rankings:
            for rank, index in enumerate(ranking):
                fused[index] = fused.get(index, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused, key=lambda i: -fused[i])[:top_k]
        hits = tuple(
            Hit(
                self.passages[i],
                score=fused[i],
                coverage=known * sum(w for t, w in weights.items() if t in self._term_sets[i]) / total,
                similarity=float(similarity[i]) if similarity is not None else None,
                sentence_similarity=self._sentence_similarity(i, query_vector),
            )
            for i in best
        )
        semantic = known > 0 or not weights  # a name alone is not rescued by its embedding either
        minority = 2 * len(weights) < len(set(query))
        lexical_evidence = [_corroborated(h) if minority else h.coverage for h in hits]
        semantic_evidence = [(h.similarity or 0.0) * semantic for h in hits]
        confidence = max(map(max, lexical_evidence, semantic_evidence), default=0.0)
        confident = bool(hits) and confidence >= min_score
        return Retrieval(hits, confidence=round(confidence, 4), confident=confident)

    def _similarity(self, query: np.ndarray, similarity: np.ndarray) -> np.ndarray:
        """Each passage's cosine with the question for ranking: of its text or, when closer, of one of the
        questions it answers (doc2query); `similarity` holds the texts' cosines."""
        ranked = similarity.copy()
        for index, rows in enumerate(self._question_vectors or ()):
            if len(rows):
                ranked[index] = max(ranked[index], float(np.max(rows @ query)))
        return ranked

    def _sentence_similarity(self, index: int, query_vector: Sequence[float] | None) -> tuple[float, ...]:
        """Cosine of the question with each of the passage's sentences (empty without embeddings)."""
        if self.sentence_vectors is None or query_vector is None:
            return ()
        rows = self.sentence_vectors[index]
        return tuple(float(x) for x in rows @ np.asarray(query_vector, dtype=np.float32)) if len(rows) else ()


def _corroborated(hit: Hit) -> float:
    """The hit's coverage, scaled down when its meaning (the closer of the passage's cosine and its best
    sentence's) is far from the question's: most of the question's words are foreign to the documents,
    so the few shared ones may be generic ("help", "fix") rather than the subject. Without embeddings
    there is nothing to corroborate with, and the coverage stands."""
    if hit.similarity is None:
        return hit.coverage
    meaning = max((hit.similarity, *hit.sentence_similarity))  # no sentences: the passage alone
    return hit.coverage * min(1.0, max(meaning, 0.0) / CORROBORATION)


def names(text: str) -> set[str]:
    """Stemmed capitalised words that do not open a sentence: places, brands, people ("Rotterdam")."""
    return {_stem(w.lower()) for w in _NAME.findall(text.strip())}
