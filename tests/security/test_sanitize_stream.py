"""Sanitizing a reply as it streams in (issue 10, item 2): the work is linear in the reply's
length, what is shown is safe at every moment, and the parts add up to the stored text.

Work is counted as the characters `StreamSanitizer` hands to the markdown parser
(`parsed_chars`), never as time.
"""

from __future__ import annotations

import pytest

from llm_service.security.sanitize import StreamSanitizer, sanitize
from tests.security.test_sanitize import rendered_images, rendered_problems

PARAGRAPHS = (
    "Here is `code <b>` and a [link](https://example.com/a?b=1) and <b>bold</b> text, a < b, "
    "see (this): yes!\nA second line of the same paragraph, with *emphasis* and more words.\n\n"
    "- an item with [a reference][docs]\n- another item\n\n"
    "[docs]: https://example.com/docs\n\n"
)
CODE = "    x = [i for i in range(10) if i < 5]  # (a): b\n\n"
LONG_PARAGRAPH = "Words (and parens): a [link](https://example.com) here, `code` there! "


def fed(text: str, piece: int = 9) -> tuple[StreamSanitizer, str]:
    stream = StreamSanitizer()
    shown = "".join(stream.feed(text[i : i + piece]) for i in range(0, len(text), piece))
    return stream, shown + stream.finish()


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("paragraphs", PARAGRAPHS),
        ("one fenced code block", None),
        ("indented code", CODE),
        ("one paragraph", LONG_PARAGRAPH),
    ],
)
def test_the_work_grows_linearly_with_the_reply(name: str, unit: str | None) -> None:
    def reply(times: int) -> str:
        if unit is None:  # one block that never ends until the very end
            return "```python\n" + CODE.strip() + "\n\n" + (CODE * times * 4) + "```\n"
        return unit * times

    small, small_shown = fed(reply(20))
    large, large_shown = fed(reply(200))
    assert large.parsed_chars < 15 * small.parsed_chars, (small.parsed_chars, large.parsed_chars)
    # ...and the whole reply was parsed, at least once
    assert large.parsed_chars >= len(reply(200))
    assert small_shown == small.text() and large_shown == large.text()


def test_a_streamed_reply_adds_up_to_what_sanitize_makes_of_it() -> None:
    text = PARAGRAPHS * 3 + "<img src=x onerror=alert(1)> and [x](javascript:alert(1))\n"
    for piece in (1, 3, 9, 50):
        stream, shown = fed(text, piece)
        assert shown == stream.text() == sanitize(text)


def test_text_is_shown_before_the_reply_ends() -> None:
    stream = StreamSanitizer()
    assert stream.feed("Hello there, ") == "Hello there, "
    assert stream.feed("how are you") == "how are you"
    shown = stream.feed("?\n\nA [link](https://example.com) and more text to read here. ")
    shown += stream.feed("x" * 100)
    assert "A [link](https://example.com)" in shown


def test_a_later_reference_definition_cannot_make_shown_text_dangerous() -> None:
    pieces = [
        "See [x][1] and ![y][2] and [z].\n\n",
        "More text in between, long enough to be examined on its own: " + "words " * 20 + "\n\n",
        "[1]: javascript:alert(1)\n[2]: https://evil.example/y.png\n[z]: <vbscript:x>\n",
    ]
    stream = StreamSanitizer()
    shown = ""
    for piece in pieces:
        shown += stream.feed(piece)
        assert rendered_problems(shown) == [] and rendered_images(shown) == [], shown
    shown += stream.finish()
    assert shown == stream.text()
    assert rendered_problems(shown) == [] and rendered_images(shown) == []
    assert "[y][2]" in shown and "[1]: #" in shown and "[z]: #" in shown
    assert sanitize(shown) == shown


def test_nul_never_reaches_the_stream() -> None:
    stream, shown = fed("a\x00b <b>c\x00</b>\x00", 2)
    assert shown == stream.text() == "ab <b>c</b>"



def test_the_first_words_of_a_reply_are_shown_when_they_arrive() -> None:
    """A reply that opens with punctuation the parser must look at ("Hello!") is not held back
    until `_EXAMINE_EVERY` characters have arrived: time to first delta is one piece."""
    stream = StreamSanitizer()
    assert stream.feed("Hello! I am ") == "Hello! I am "
    assert stream.feed("here (to help)") == ""  # once shown, the usual growth rule again
    rest = stream.feed(" and more.") + stream.finish()
    assert "Hello! I am " + rest == stream.text() == "Hello! I am here (to help) and more."


@pytest.mark.parametrize("pieces", [("<scr", "ipt>alert(1)</script> hi"),
                                    ("a <b", " onclick=x>bold</b> ok")])
def test_an_opening_tag_cut_between_pieces_is_held_not_shown_as_text(
    pieces: tuple[str, str],
) -> None:
    stream = StreamSanitizer()
    shown = "".join(stream.feed(piece) for piece in pieces) + stream.finish()
    assert shown == stream.text() == sanitize("".join(pieces))
