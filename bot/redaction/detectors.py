"""The built-in detectors: secrets (always, unless switched off) and personal data.

Each `Detector` is a regular expression that finds candidates and, where a checksum
exists, a validator that keeps only real ones: a 16-digit run is a card number only when
its Luhn check passes, an IBAN only when its mod-97 check passes, a US social security
number only when it is not in a range the SSA never issues. Checksums come from
python-stdnum, never from hand-written code.

Order matters and is fixed: secrets first (a password inside a URL before the URL's
`user@host` looks like an email address), then the numbers with checksums (IBAN before
card, both before phone numbers), then emails, then phone numbers last, on what is left.
Placeholders (`[redacted API key]`) hold no digits and no `@`, so a later detector never
matches an earlier one's placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.us import ssn

SECRET = "secret"
PII = "pii"
ADMIN = "admin"


@dataclass(frozen=True)
class Detector:
    """One kind of value to withhold.

    `noun` names it in the placeholder (`[redacted API key]`) and, with `article` or
    `plural`, in the notice the user reads. When `group` is set only that group of the
    match is replaced (the password of `scheme://user:pass@host`, not the whole URL).
    """

    kind: str
    category: str
    noun: str
    article: str
    plural: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool] | None = None
    group: int = 0

    @property
    def placeholder(self) -> str:
        return f"[redacted {self.noun}]"


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def _is_card(value: str) -> bool:
    digits = _digits(value)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn.is_valid(digits)


def _is_iban(value: str) -> bool:
    return bool(iban.is_valid(value))


def _is_national_id(value: str) -> bool:
    return any(module.is_valid(value) for module in (ssn, nir, dni, nie, codicefiscale, cpf))


_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\b")
# Shaped like a US SSN: that detector decides (an invalid one is not a phone number).
_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")


def _is_phone(value: str) -> bool:
    digits = _digits(value)
    shape = value.strip()
    if _IPV4.match(shape) or _ISO_DATE.match(shape) or _SSN_SHAPE.match(shape):
        return False
    if value.lstrip().startswith("+"):
        return 8 <= len(digits) <= 15
    return 9 <= len(digits) <= 15


def _secret(
    kind: str, noun: str, article: str, plural: str, regex: str, *, group: int = 0
) -> Detector:
    return Detector(kind, SECRET, noun, article, plural, re.compile(regex), group=group)


_API_KEY = ("api_key", "API key", "an", "API keys")

#: Secrets: tokens and keys of the common providers, private keys, passwords in URLs.
SECRET_DETECTORS: tuple[Detector, ...] = (
    _secret(
        "private_key",
        "private key",
        "a",
        "private keys",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    _secret(
        "slack_token",
        "Slack token",
        "a",
        "Slack tokens",
        r"\b(?:xox[abpors]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})",
    ),
    _secret(*_API_KEY, r"\bsk-ant-[A-Za-z0-9_-]{20,}"),  # Anthropic, before OpenAI's sk-
    _secret(*_API_KEY, r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),  # OpenAI
    _secret(*_API_KEY, r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ID
    _secret(*_API_KEY, r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    _secret(*_API_KEY, r"\bAIza[0-9A-Za-z_-]{35}"),  # Google
    _secret(*_API_KEY, r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"),  # Stripe
    _secret(
        "url_password",
        "password",
        "a",
        "passwords",
        r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@<>|]+:([^\s@/<>|]+)@",
        group=1,
    ),
)


def _pii(
    kind: str,
    noun: str,
    article: str,
    plural: str,
    regex: str,
    validate: Callable[[str], bool] | None = None,
) -> Detector:
    return Detector(kind, PII, noun, article, plural, re.compile(regex), validate)


#: Personal data, when enabled: checksummed numbers first, phone numbers last.
PII_DETECTORS: tuple[Detector, ...] = (
    _pii(
        "iban",
        "IBAN",
        "an",
        "IBANs",
        r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b",
        _is_iban,
    ),
    _pii(
        "card",
        "payment card number",
        "a",
        "payment card numbers",
        r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])",
        _is_card,
    ),
    _pii(
        "national_id",
        "national ID number",
        "a",
        "national ID numbers",
        # US SSN (dashed), French NIR, Spanish DNI/NIE, Italian codice fiscale, Brazilian CPF
        r"\b(?:\d{3}-\d{2}-\d{4}"
        r"|[12][ ]?\d{2}[ ]?\d{2}[ ]?(?:\d{2}|2[AB])[ ]?\d{3}[ ]?\d{3}[ ]?\d{2}"
        r"|[XYZ]?\d{7,8}-?[A-Z]"
        r"|[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]"
        r"|\d{3}\.\d{3}\.\d{3}-\d{2})\b",
        _is_national_id,
    ),
    _pii(
        "email",
        "email address",
        "an",
        "email addresses",
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    ),
    _pii(
        "phone",
        "phone number",
        "a",
        "phone numbers",
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,5}(?!\w)"
        r"|(?<![\w+])\+\d{8,15}(?!\w)",
        _is_phone,
    ),
)
