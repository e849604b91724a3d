"""Find and redact personal data: e-mail addresses, phone numbers, payment cards, IBANs, IP addresses.

Cards must pass the Luhn check and IBANs the ISO 13616 mod-97 check, so order numbers and reference codes
stay readable. Phone candidates are validated with Google's libphonenumber (the `phonenumbers` package)
against the regions in SAFETY_PHONE_REGIONS; numbers written with a leading + or 00 are validated anywhere.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers

__all__ = ["PiiFinding", "PiiRedactor", "iban_is_valid", "luhn_is_valid"]

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
# Card numbers: 13-19 digits (ASCII or full-width) in any grouping, with at most one separator between two
# digits: a space, dash, dot, slash or underscore (ASCII or full-width), optionally padded by single spaces.
_SPACE = r"[ \u00a0\u202f\u3000]"
_CARD_SEP = rf"(?:{_SPACE}?[-./_\u2010-\u2015\uff0d\uff0e\uff0f\uff3f]{_SPACE}?|{_SPACE})"
_CARD = re.compile(rf"(?<![A-Za-z\d\-./_])\d(?:{_CARD_SEP}?\d){{12,18}}(?![A-Za-z\d_]|[-./]\d)")
_CARD_CUT = re.compile(rf"{_CARD_SEP}(?=\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(r"(?<![A-Za-z0-9+#/.-])(?:\+|00)?\(?\d[\d ()./-]{5,18}\d(?![A-Za-z0-9/-])")
_REFERENCE_BEFORE = re.compile(
    r"\b(?:order|invoice|ticket|tracking|reference|ref|booking|policy|serial|account|customer|case|claim|"
    r"contract|item|article|sku|parcel|shipment|model|part|bestell\w*|rechnung\w*|pedido|commande|заказ\w*)"
    r"(?:\s*(?:number|no\.?|nr\.?|num\.?|id|#|nummer|número|numéro|номер))?(?:\s+is)?\s*[:#]?\s*$",
    re.I,
)
_VERSION_BEFORE = re.compile(
    r"\b(?:v|version|ver\.?|firmware|build|release|update|updated|updating|upgrade|upgraded|app|ios|android|patch)"
    r"\b(?:\s+\w+){0,2}?\s*(?:to\s+)?$",
    re.I,
)
_LOCAL_V4 = [
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8")
]
_PHONE_WORDS = re.compile(
    r"(?:phone|mobile|cell|call|\btel\b|sms|whatsapp|reach me|handy|telefon|móvil|movil|"
    r"teléfono|telefono|portable|téléphone|телефон|手机|电话)",
    re.I,
)
_LOG_ID_BEFORE = re.compile(
    r"(?:\bid|_id|chat|user|update|message|date|offset|timeout|limit|from|count)['\"]?\W{0,3}$", re.I
)
_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$")


@dataclass(frozen=True, slots=True)
class PiiFinding:
    kind: str
    start: int
    end: int


def luhn_is_valid(digits: str) -> bool:
    """ISO/IEC 7812 check digit; `digits` may be full-width (int() reads any Unicode decimal digit)."""
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        value = int(char)
        if index % 2 == parity:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_is_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


class PiiRedactor:
    """Replaces each finding with a marker such as "[card]"."""

    def __init__(
        self, phone_regions: Sequence[str] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "RU", "CN")
    ) -> None:
        self._regions = tuple(phone_regions)

    def find(self, text: str) -> list[PiiFinding]:
        found: list[PiiFinding] = []
        taken: list[tuple[int, int]] = []

        def add(kind: str, start: int, end: int) -> None:
            if not any(s < end and start < e for s, e in taken):
                taken.append((start, end))
                found.append(PiiFinding(kind, start, end))

        scans: list[tuple[str, re.Pattern[str], Callable[[str, str, int], bool]]] = [
            ("email", _EMAIL, lambda value, _text, _start: True),
            ("iban", _IBAN, lambda value, _text, _start: _iban_prefix(value) is not None),
            ("card", _CARD, lambda value, _text, _start: _card_prefix(value) == value),
            ("ip", _IPV4, self._is_ipv4),
            ("ip", _IPV6, lambda value, _text, _start: _is_ipv6(value)),
            ("phone", _PHONE, self._is_phone),
        ]
        for kind, pattern, valid in scans:
            if kind == "email" and "@" not in text:
                continue
            for match in pattern.finditer(text):
                value = match.group(0).rstrip(" ")
                if kind == "iban":  # a word after the IBAN may have been swallowed: keep the valid prefix
                    value = _iban_prefix(value) or value
                elif kind == "card":  # so may a number after the card ("... 1111 exp 12 25")
                    value = _card_prefix(value) or value
                if valid(value, text, match.start()):
                    add(kind, match.start(), match.start() + len(value))
        return sorted(found, key=lambda f: f.start)

    def redact(self, text: str, *, keep: frozenset[str] = frozenset()) -> tuple[str, list[str]]:
        """The text with markers, and the kinds found (in order, repeated per finding).

        Values in `keep` (the company's own published contacts, say) are left as they are.
        """
        findings = [f for f in self.find(text) if text[f.start : f.end] not in keep]
        for finding in reversed(findings):
            text = f"{text[: finding.start]}[{finding.kind}]{text[finding.end :]}"
        return text, [f.kind for f in findings]

    def mask_log_line(self, line: str) -> str:
        """`line` with personal data replaced, for log records (library debug lines dump whole updates).

        Bare digit runs after an id-like key ("chat_id": 5125550123, update_id=...) are identifiers, not
        phone numbers, and stay readable; everything else the redactor knows is masked.
        """
        findings = [
            f
            for f in self.find(line)
            if not (
                f.kind == "phone"
                and line[f.start : f.end].isdigit()
                and _LOG_ID_BEFORE.search(line[max(0, f.start - 16) : f.start])
            )
        ]
        for finding in reversed(findings):
            line = f"{line[: finding.start]}[{finding.kind}]{line[finding.end :]}"
        return line

    @staticmethod
    def _is_ipv4(value: str, text: str, start: int) -> bool:
        if _VERSION_BEFORE.search(text[max(0, start - 12) : start]):
            return False
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError:
            return False
        # 192.168.1.1 is everybody's router, not personal data; public addresses identify a connection
        return not any(address in network for network in _LOCAL_V4)

    def _is_phone(self, value: str, text: str, start: int) -> bool:
        digits = re.sub(r"\D", "", value)
        if not 7 <= len(digits) <= 15 or _DATE.match(value.strip()) or value.count(".") > 2:
            return False
        if value.count("(") != value.count(")") or ".." in value:
            return False
        before = text[max(0, start - 40) : start]
        said_phone = bool(_PHONE_WORDS.search(before))
        if _VERSION_BEFORE.search(before) or (_REFERENCE_BEFORE.search(before) and not said_phone):
            return False
        international = value.startswith(("+", "00"))
        regions = (None,) if international else self._regions
        for region in regions:
            try:
                number = phonenumbers.parse(value if not value.startswith("00") else "+" + value[2:], region)
            except phonenumbers.NumberParseException:
                continue
            # A leading + or 00, or a word like "phone" just before, is a strong signal: a possible length
            # will do. Otherwise the number must be valid (a real area code and length) in some region.
            lenient = international or said_phone
            if phonenumbers.is_possible_number(number) if lenient else phonenumbers.is_valid_number(number):
                return True
        return False


def _card_prefix(value: str) -> str | None:
    """`value` when it passes the Luhn check; else, for a run longer than 16 digits, its 15- or 16-digit
    prefix cut at a separator that does (a card followed by another number: "4111 ... 1111 12 25").

    Shorter runs are never cut: a Luhn-failing 16-digit order number must not become a 13-digit "card".
    """
    if luhn_is_valid(_digits(value)):
        return value
    if len(_digits(value)) <= 16:
        return None
    for cut in reversed([m.start() for m in _CARD_CUT.finditer(value)]):
        if len(_digits(value[:cut])) in (15, 16) and luhn_is_valid(_digits(value[:cut])):
            return value[:cut]
    return None


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdecimal())


def _is_ipv6(value: str) -> bool:
    if value.count(":") < 2 or len(value.replace(":", "")) < 4:
        return False
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def _iban_prefix(value: str) -> str | None:
    """The longest prefix of `value`, cut at a space, that is a valid IBAN."""
    candidate = value
    while candidate:
        if iban_is_valid(candidate):
            return candidate
        if " " not in candidate:
            return None
        candidate = candidate.rsplit(" ", 1)[0]
    return None
