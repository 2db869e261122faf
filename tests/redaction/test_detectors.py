"""The detectors on their own: what counts as a secret or personal data, and what does not."""

from __future__ import annotations

import pytest

from bot.redaction import InvalidPattern, RedactionPolicy, Redactor, check_regex
from tests.redaction.helpers import (
    AWS_KEY,
    CARD,
    EMAIL,
    GITHUB_TOKEN,
    IBAN,
    NOT_A_CARD,
    OPENAI_KEY,
    SLACK_TOKEN,
    SSN,
)


def redact(text: str, *, pii: bool = True, **patterns: str) -> tuple[str, Redactor]:
    redactor = Redactor(RedactionPolicy(secrets=True, pii=pii, patterns=patterns))
    return redactor.redact(text), redactor


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        (SLACK_TOKEN, "[redacted Slack token]"),
        ("xapp-1-A0123BCDEF-4567890-abcdef0123", "[redacted Slack token]"),
        (OPENAI_KEY, "[redacted API key]"),
        ("sk-ant-api03-Qw3rTy-Uiop4Sdfg5Hjkl6Zxcv", "[redacted API key]"),
        (AWS_KEY, "[redacted API key]"),
        (GITHUB_TOKEN, "[redacted API key]"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[redacted API key]"),
        ("AIzaSyD-1234567890abcdefghijklmnopqrstu", "[redacted API key]"),
        ("sk_live_51HabcdefGHIJKLmnop", "[redacted API key]"),
        ("rk_live_51HabcdefGHIJKLmnop", "[redacted API key]"),
    ],
)
def test_secrets_of_the_common_providers_become_typed_placeholders(
    value: str, placeholder: str
) -> None:
    text, redactor = redact(f"use {value} please", pii=False)
    assert text == f"use {placeholder} please"
    assert redactor.count == 1


def test_private_keys_and_url_passwords_are_withheld_but_the_rest_kept() -> None:
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    text, redactor = redact(
        f"key:\n{pem}\nurl postgres://app:hunter2@db.internal:5432/main", pii=False
    )
    assert text == (
        "key:\n[redacted private key]\nurl postgres://app:[redacted password]@db.internal:5432/main"
    )
    assert redactor.notice() == (
        "I withheld 2 items (a private key, a password) from the language model."
    )


def test_personal_data_is_withheld_only_when_enabled() -> None:
    question = f"Mail {EMAIL}, card {CARD}, IBAN {IBAN}, SSN {SSN}, call +33 6 12 34 56 78."
    off, _ = redact(question, pii=False)
    on, redactor = redact(question)
    assert off == question
    assert on == (
        "Mail [redacted email address], card [redacted payment card number], "
        "IBAN [redacted IBAN], SSN [redacted national ID number], call [redacted phone number]."
    )
    assert redactor.count == 5


def test_a_sixteen_digit_number_that_fails_luhn_is_not_a_card() -> None:
    text, redactor = redact(f"order {NOT_A_CARD} and {NOT_A_CARD.replace(' ', '')}")
    assert text == f"order {NOT_A_CARD} and {NOT_A_CARD.replace(' ', '')}"
    assert redactor.notice() is None


def test_checksums_decide_ibans_and_national_ids() -> None:
    # A mistyped IBAN and an SSN from a range never issued are left as they are.
    text, _ = redact("IBAN DE89 3704 0044 0532 0130 01 and SSN 078-05-1120")
    assert text == "IBAN DE89 3704 0044 0532 0130 01 and SSN 078-05-1120"


def test_dates_versions_and_addresses_are_not_phone_numbers() -> None:
    text = "v1.2.3 shipped 2026-11-26 10:30 from 192.168.100.200 to 3 500 users"
    assert redact(text)[0] == text


def test_admin_patterns_and_the_notice_counting_repeats() -> None:
    text, redactor = redact(
        f"PROJ-12 and PROJ-345 for {EMAIL} and {EMAIL}", TICKET=r"PROJ-[0-9]{1,6}"
    )
    assert text == (
        "[redacted TICKET] and [redacted TICKET] for [redacted email address] "
        "and [redacted email address]"
    )
    assert redactor.notice() == (
        "I withheld 4 items (2 email addresses, 2 values matching TICKET) from the language model."
    )


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        ("(a+)+$", "a repeat inside a repeat"),
        ("(a|ab)*c", "alternatives inside a repeat"),
        (r"(\w+)\s\1", "a backreference"),
        (".*.*.*.*x", "more than 3 open-ended repeats"),
        ("[a-z", "not a valid regular expression"),
        ("x?", "matches empty text"),
        ("a" * 201, "the limit is 200"),
    ],
)
def test_risky_or_broken_admin_patterns_are_refused_in_one_sentence(regex: str, why: str) -> None:
    with pytest.raises(InvalidPattern) as refused:
        check_regex(regex)
    message = refused.value.user_message
    assert why in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_slack_escaped_angle_brackets_are_read_back() -> None:
    assert check_regex("&lt;ID-[0-9]{3}&gt;") == "<ID-[0-9]{3}>"


def test_a_bad_stored_pattern_is_skipped_not_fatal() -> None:
    text, _ = redact("PROJ-1 x", pii=False, TICKET="(a+)+", OK="PROJ-[0-9]")
    assert text == "[redacted OK] x"
