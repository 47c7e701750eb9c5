"""`scrub`: a vendor's message loses every echo of the key, however transformed."""

from __future__ import annotations

import base64

import pytest

from llm_service.providers.base import scrub

KEY = "CanaryQ7f3a9c2eDoNotLeak4d1bZ"  # no known key shape


@pytest.mark.parametrize("echo", [
    KEY,
    KEY.upper(),
    KEY.lower(),
    base64.b64encode(KEY.encode()).decode(),
    base64.urlsafe_b64encode(KEY.encode()).decode().rstrip("="),
    base64.b64encode(b"user:" + KEY.encode()).decode(),  # HTTP Basic, another alignment
    base64.b64encode(b"ab" + KEY.encode()).decode(),
    f"{KEY[:10]} {KEY[10:20]} {KEY[20:]}",
    KEY[3:11],  # any 8 characters of it
])
def test_every_transformed_echo_is_redacted(echo: str) -> None:
    cleaned = scrub(f"Key {echo} is not valid here.", KEY) or ""
    assert cleaned.startswith("Key ") and cleaned.endswith(" is not valid here.")
    echoed = cleaned[len("Key ") : -len(" is not valid here.")]
    assert "[redacted]" in echoed
    # What is left of the echo: pieces too short to tell anything (the prefix's own base64).
    assert all(len(piece) < 8 for piece in echoed.replace(" ", "").split("[redacted]"))


def test_seven_shared_characters_are_not_key_material() -> None:
    assert scrub(f"model {KEY[:7]} is unknown", KEY) == f"model {KEY[:7]} is unknown"


def test_a_short_key_is_still_removed_exactly() -> None:
    assert scrub("echo: abc123 done", "abc123") == "echo: [redacted] done"


def test_the_reason_around_an_echo_is_kept_and_bounded() -> None:
    cleaned = scrub("x" * 10_000 + KEY, KEY) or ""
    assert len(cleaned) == 300 and KEY[:8] not in cleaned


def test_non_ascii_text_keeps_its_place() -> None:
    # Characters whose lower case is longer (İ) must not shift what is redacted.
    assert scrub(f"\u0130\u0130 {KEY.upper()} ok", KEY) == "\u0130\u0130 [redacted] ok"
