"""Stored messages and replies made safe for a chat window that renders HTML and markdown.

`nh3` (ammonia) removes script-capable markup: `script`, `style`, `iframe`, `object`, `embed` and
their kind (with their content), event-handler attributes, and URLs with a scheme other than http,
https or mailto. Markdown links and images with such a scheme get `#` as their target. Text is
otherwise left exactly as it was:

- text without `<`, `:` or `&` is returned untouched (most messages);
- markdown code (fenced blocks and inline spans) is never touched: a markdown renderer shows it as
  text, so `a < b` and `` `<div>` `` stay as written;
- nh3 escapes `<`, `>`, `&` and `"` in the text it keeps; exactly that escaping is undone, in one
  pass, so `a < b` stays `a < b` while a literal `&lt;script&gt;` also stays as it was.

The vendor receives the message as typed; only what is stored and shown is sanitized.
"""

from __future__ import annotations

import html
import re

import nh3

# Elements removed together with their content.
_REMOVED_WITH_CONTENT = {
    "script", "style", "iframe", "object", "embed", "frame", "frameset", "applet", "noscript",
    "template", "svg", "math", "xml", "noembed", "noframes", "plaintext", "xmp", "title",
}
# Formatting a chat reply may carry; everything else is unwrapped (its text kept).
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s",
    "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead",
    "tr", "u", "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "td": {"colspan"},
               "th": {"colspan"}}
_SCHEMES = {"http", "https", "mailto"}

_CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`)", re.DOTALL)
_NEEDS_CLEANING = re.compile(r"<|:|&", re.ASCII)  # `&colon;`, `&#58;`: colons too
_NH3_ESCAPES = re.compile(r"&(lt|gt|amp|quot);")
_UNESCAPE = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_MD_LINK_TARGET = re.compile(r"(\]\(\s*<?)((?:[^()\s>\]]|\([^()\s]*\))*)")
_UNSAFE_SCHEME = re.compile(r"^(?:javascript|vbscript|data|file):", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")


def _safe_link_target(match: re.Match[str]) -> str:
    target = _INVISIBLE.sub("", html.unescape(match.group(2).replace("\\", "")))
    return match.group(1) + ("#" if _UNSAFE_SCHEME.match(target) else match.group(2))


def _clean_prose(text: str) -> str:
    if "<" in text:
        cleaned = nh3.clean(
            text,
            tags=_TAGS,
            clean_content_tags=_REMOVED_WITH_CONTENT,
            attributes=_ATTRIBUTES,
            url_schemes=_SCHEMES,
            link_rel=None,
            strip_comments=True,
        )
        text = _NH3_ESCAPES.sub(lambda m: _UNESCAPE[m.group(1)], cleaned)
    return _MD_LINK_TARGET.sub(_safe_link_target, text)


def _sanitize_once(text: str) -> str:
    parts = _CODE.split(text)
    # split() with one group: prose at even indexes, code at odd ones.
    return "".join(part if i % 2 else _clean_prose(part) for i, part in enumerate(parts))


def sanitize(text: str) -> str:
    """`text` without script-capable markup; unchanged when it has none. Idempotent."""
    if not _NEEDS_CLEANING.search(text):
        return text
    for _ in range(4):  # undoing nh3's escaping can expose markup nh3 then removes
        cleaned = _sanitize_once(text)
        if cleaned == text:
            return cleaned
        text = cleaned
    return html.escape(text, quote=False)  # never converged: show it as inert text


_OPEN_TAG_AT_END = re.compile(r"<[^>]*\Z")
_OPEN_LINK_AT_END = re.compile(r"\]\([^)]*\Z")


def _stable_length(text: str) -> int:
    """How much of a growing text cannot change meaning when more arrives: up to an unfinished
    tag, markdown link target or code span."""
    cut = len(text)
    for pattern in (_OPEN_TAG_AT_END, _OPEN_LINK_AT_END):
        match = pattern.search(text)
        if match:
            cut = min(cut, match.start())
    if text.count("`") % 2:
        cut = min(cut, text.rindex("`"))
    return cut


class StreamSanitizer:
    """Sanitizes a reply that arrives in pieces: each `feed` returns the next part of the
    sanitized text that is safe to show now. Everything returned is sanitized, and the parts add
    up to `sanitize(whole)` unless later markup changes what was already shown (an HTML tag left
    open then closed); then `finish` returns nothing more and the full text is authoritative."""

    def __init__(self) -> None:
        self.raw = ""
        self._sent = ""

    def _advance(self, clean: str) -> str:
        if not clean.startswith(self._sent):
            return ""
        delta, self._sent = clean[len(self._sent):], clean
        return delta

    def feed(self, piece: str) -> str:
        self.raw += piece
        return self._advance(sanitize(self.raw[: _stable_length(self.raw)]))

    def finish(self) -> str:
        return self._advance(sanitize(self.raw))
