"""Stored messages and replies made safe for a chat window that renders markdown with raw HTML.

What is markup and what is code is decided by a real CommonMark parser, markdown-it-py's
`commonmark` preset with raw HTML on (the widget's own renderer), never by a regex: a regex that
disagrees with CommonMark leaves "code" alone that a renderer shows as live HTML (issue 10). The
parser's token stream, with each token's position in the original text, says what to rewrite; the
output is still the original markdown with only the dangerous parts rewritten:

- raw HTML (`html_block`, `html_inline`) goes through `nh3` (ammonia): `script`, `style`,
  `iframe`, `object`, `embed` and their kind are removed with their content, other unknown tags
  are unwrapped, event handlers and URLs with a scheme other than http, https or mailto go;
- every link and image destination (inline `[x](...)`, reference definitions `[1]: ...`,
  autolinks `<...>`) must be relative or http, https or mailto: otherwise it becomes `#` (an
  autolink is shown as text);
- an image (markdown or `<img>`) is shown only when its URL is http(s) on a host listed in
  `LLM_ALLOWED_IMAGE_HOSTS`; any other image becomes a plain link, so rendering a reply never
  sends a request (and whatever its URL carries) to a host nobody chose;
- code (`code_inline`, `fence`, `code_block`) is never touched, and text with neither `<` nor `[`
  is returned as it is (no markup that needs rewriting can exist without one of them);
- nh3 escapes `<`, `>`, `&` and `"` in the text of an HTML block; that escaping is undone where a
  browser reads the character as text anyway (`a < b`) and the block does not itself spell that
  escape, and kept where it would start markup.

U+0000 is removed everywhere (PostgreSQL cannot store it), and the other C0 control characters
but tab and newline wherever anything is parsed (a browser skips them inside a URL's scheme where
a parser stops at them). The result is a fixed point: the text
is rewritten until parsing it finds nothing more to rewrite, so sanitizing twice equals once;
should that not happen within a few rounds, the text is returned with every ASCII punctuation
character backslash-escaped, which renders as the same characters and is inert. In text with
`<` or `[`, line endings become `\\n`. The vendor receives the message as typed; only what is
stored and shown is sanitized.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable
from typing import Any
from urllib.parse import unquote

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import MD_TRIM_CHARS
from markdown_it.rules_block.state_block import StateBlock
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token

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

_TRIGGERS = ("<", "[")
# Invisible control characters: a browser skips them in a URL where a parser stops at them.
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_ROUNDS = 6

# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------

# What a browser skips in a scheme, and more (zero-width and bidi marks): stricter is safe.
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u00ad\u200b-\u200f\u2028\u2029\u2060\ufeff]+")
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")
# An image URL whose host is certain: no user part, no backslash, nothing a browser reads
# differently from this pattern.
_IMAGE_URL = re.compile(r"https?://([a-z0-9.\-]+?)\.?(?::[0-9]{1,5})?(?:[/?#]|\Z)")


def _plain_url(url: str) -> str:
    return _INVISIBLE.sub("", html.unescape(unquote(url))).lower()


def _url_safe(url: str) -> bool:
    """Relative, or http, https or mailto, however the scheme is spelled or encoded."""
    scheme = _SCHEME.match(_plain_url(url))
    return scheme is None or scheme.group(1) in _SCHEMES


def _image_allowed(url: str, hosts: Collection[str]) -> bool:
    match = _IMAGE_URL.match(_plain_url(url))
    return match is not None and match.group(1) in hosts


# --------------------------------------------------------------------------------------------
# Raw HTML
# --------------------------------------------------------------------------------------------

# nh3's output is serialized HTML: attribute values always in double quotes, `"` in them escaped.
_SERIALIZED_TAG = re.compile(r'</?[A-Za-z][^\s/>]*(?:\s+[^\s=/>]+(?:="[^"]*")?)*\s*/?>')
_IMG = re.compile(r'<img((?:\s+[^\s=/>]+(?:="[^"]*")?)*)\s*/?>')
_ATTRIBUTE = re.compile(r'([^\s=/>]+)(?:="([^"]*)")?')
# nh3's escapes in text, undone only where a browser reads the character as text anyway.
_TEXT_ESCAPE = re.compile(r"&lt;(?![A-Za-z/!?])|&gt;|&amp;(?![A-Za-z0-9#])|&quot;|&nbsp;")
_UNESCAPE = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&nbsp;": "\u00a0"}
_TAG_NAME = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)")


def _nh3(fragment: str) -> str:
    return nh3.clean(
        fragment,
        tags=_TAGS,
        clean_content_tags=_REMOVED_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel=None,
        strip_comments=True,
    )


def _image_as_link(match: re.Match[str], hosts: Collection[str]) -> str:
    attrs = {name.lower(): value or "" for name, value in _ATTRIBUTE.findall(match.group(1))}
    src = attrs.get("src", "")
    if src and _image_allowed(html.unescape(src), hosts):
        return match.group(0)
    alt = html.escape(html.unescape(attrs.get("alt", "")), quote=False) or "image"
    if not src or not _url_safe(html.unescape(src)):
        return alt
    return f'<a href="{src}">{alt}</a>'


def _clean_html(fragment: str, hosts: Collection[str]) -> str:
    """Raw HTML through nh3, images not allowed turned into links, and nh3's text escaping
    undone where it changes nothing a browser shows, for each escape the fragment does not
    itself spell (so what was typed `&gt;` stays `&gt;`)."""
    cleaned = _IMG.sub(lambda m: _image_as_link(m, hosts), _nh3(fragment))
    typed = fragment.lower()

    def undo(match: re.Match[str]) -> str:
        escape = match.group()
        return escape if escape in typed else _UNESCAPE[escape]

    out: list[str] = []
    pos = 0
    for tag in _SERIALIZED_TAG.finditer(cleaned):
        out.append(_TEXT_ESCAPE.sub(undo, cleaned[pos : tag.start()]))
        out.append(tag.group())
        pos = tag.end()
    out.append(_TEXT_ESCAPE.sub(undo, cleaned[pos:]))
    return "".join(out)


def _clean_tag(tag: str, hosts: Collection[str]) -> str:
    """One inline HTML tag (an `html_inline` token) made safe; "" drops it."""
    match = _TAG_NAME.match(tag)
    if match is None:  # a comment, processing instruction, declaration or CDATA
        return ""
    closing, name = match.group(1), match.group(2).lower()
    if name not in _TAGS or (name == "img" and closing):
        return ""
    if closing:
        return tag
    cleaned = _clean_html(tag, hosts)
    if name != "img" and cleaned.endswith(f"</{name}>"):  # nh3 closes what it opens
        cleaned = cleaned[: -len(name) - 3]
    return cleaned


# --------------------------------------------------------------------------------------------
# The parser: markdown-it-py, with the position of what it parses recorded
# --------------------------------------------------------------------------------------------

Edit = tuple[int, int, str]  # replace text[start:end] with the string
# Per line: offset in the joined text, source start, length, and how many of its first
# characters are spaces standing for part of a tab (source start is after that tab).
Lines = list[tuple[int, int, int, int]]
PENDING_IMAGE = "sanitize_pending_image"


class _Source:
    """Where the characters of a token's content (lines joined, container markers and
    indentation cut) are in the source text."""

    def __init__(self, lines: Lines, lead: int = 0) -> None:
        self.lines = lines
        self.lead = lead
        self._starts = [offset for offset, _, _, _ in lines]

    def at(self, index: int) -> int:
        index += self.lead
        line = max(bisect_right(self._starts, index) - 1, 0)
        offset, start, length, pad = self.lines[line]
        return start + min(max(index - offset - pad, 0), max(length - pad - 1, 0))

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self.at(start), (self.at(end - 1) + 1 if end > start else self.at(start))


def _recording_get_lines(state: StateBlock, lines: Lines, out: list[str]) -> Callable[..., str]:
    """StateBlock.getLines (same result) that also records where each line came from."""

    def get_lines(begin: int, end: int, indent: int, keep_last_lf: bool) -> str:
        lines.clear()
        out.clear()
        parts: list[str] = []
        offset = 0
        for line in range(begin, end):
            line_indent = 0
            line_start = first = state.bMarks[line]
            last = state.eMarks[line] + 1 if line + 1 < end or keep_last_lf else state.eMarks[line]
            while first < last and line_indent < indent:
                ch = state.src[first]
                if ch in " \t":
                    if ch == "\t":
                        line_indent += 4 - (line_indent + state.bsCount[line]) % 4
                    else:
                        line_indent += 1
                elif first - line_start < state.tShift[line]:
                    line_indent += 1
                else:
                    break
                first += 1
            pad = " " * (line_indent - indent) if line_indent > indent else ""
            part = pad + state.src[first:last]
            lines.append((offset, first, len(part), len(pad)))
            parts.append(part)
            offset += len(part)
        out.append("".join(parts))
        return out[0]

    return get_lines


def _block_with_lines(rule: Callable[..., bool]) -> Callable[..., bool]:
    """Paragraphs, setext headings and HTML blocks: remember where their content came from."""

    def wrapped(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        if silent:
            return rule(state, start_line, end_line, silent)
        lines: Lines = []
        out: list[str] = []
        count = len(state.tokens)
        state.getLines = _recording_get_lines(state, lines, out)  # type: ignore[method-assign]
        try:
            ok = rule(state, start_line, end_line, silent)
        finally:
            del state.getLines
        if ok:
            joined_length = sum(length for _, _, length, _ in lines)
            for token in state.tokens[count:]:
                if token.type == "inline" and out:
                    lead = len(out[0]) - len(out[0].lstrip(MD_TRIM_CHARS))
                    token.meta["source"] = _Source(list(lines), lead)
                elif token.type == "html_block" and len(token.content) == joined_length:
                    token.meta["source"] = _Source(list(lines))
        return ok

    return wrapped


def _heading(rule: Callable[..., bool]) -> Callable[..., bool]:
    def wrapped(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        count = len(state.tokens)
        ok = rule(state, start_line, end_line, silent)
        if ok and not silent:
            for token in state.tokens[count:]:
                if token.type == "inline" and token.content:
                    begin = state.bMarks[start_line] + state.tShift[start_line]
                    start = state.src.find(token.content, begin, state.eMarks[start_line])
                    if start >= 0:
                        token.meta["source"] = _Source([(0, start, len(token.content), 0)])
        return ok

    return wrapped


_REFERENCE_LABEL_END = re.compile(r"(?:[^\\\]\[]|\\.)*\]", re.DOTALL)


def _reference(rule: Callable[..., bool]) -> Callable[..., bool]:
    """Reference definitions make no token: an unsafe destination is an edit in env."""

    def wrapped(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        ok = rule(state, start_line, end_line, silent)
        if not ok or silent:
            return ok
        lines: Lines = []
        parts: list[str] = []
        offset = 0
        for line in range(start_line, state.line):
            first = state.bMarks[line] + state.tShift[line]
            part = state.src[first : state.eMarks[line] + 1]
            lines.append((offset, first, len(part), 0))
            parts.append(part)
            offset += len(part)
        text = "".join(parts)
        label = _REFERENCE_LABEL_END.match(text, 1)
        if label is None:
            return ok
        pos = label.end() + 1  # past `]:`
        while pos < len(text) and text[pos] in " \t\n":
            pos += 1
        dest = state.md.helpers.parseLinkDestination(text, pos, len(text))
        if dest.ok and not _url_safe(state.md.normalizeLink(dest.str)):
            start, end = _Source(lines).span(pos, dest.pos)
            state.env["sanitize_edits"].append((start, end, "#"))
        return ok

    return wrapped


def _spanned(rule: Callable[..., bool], kind: str, label_at: int | None) -> Callable[..., bool]:
    """Inline rules: record on the token where it starts and ends (and where its label ends)."""

    def wrapped(state: StateInline, silent: bool) -> bool:
        start, count = state.pos, len(state.tokens)
        ok = rule(state, silent)
        if ok and not silent:
            label_end = -1
            if label_at is not None:  # the rule found it too, and did not say where
                end, state.pos = state.pos, start
                label_end = state.md.helpers.parseLinkLabel(
                    state, start + label_at, kind == "link_open"
                )
                state.pos = end
            for token in state.tokens[count:]:
                if token.type == kind:
                    token.meta["span"] = (start, state.pos, label_end)
                    break
        elif (
            not ok and not silent and kind == "image" and state.env.get("sanitize_pending")
            and _could_be_image(rule, state)
        ):
            token = state.push(PENDING_IMAGE, "", 0)
            token.meta["span"] = (start, start + 1, -1)
        return ok

    return wrapped


class _AnyReference(dict[str, Any]):
    """References as a stream sees them: any label may still be defined further on."""

    def get(self, key: str, default: Any = None) -> Any:
        return {"href": "", "title": ""}


def _could_be_image(rule: Callable[..., bool], state: StateInline) -> bool:
    if state.src[state.pos] != "!":
        return False
    env, pos = state.env, state.pos
    state.env = {**env, "references": _AnyReference()}
    try:
        return rule(state, True)
    finally:
        state.env, state.pos = env, pos


_TAG_START = re.compile(r"[A-Za-z/!?]")
STRAY_LT = "sanitize_stray_lt"


def _stray(width: int) -> Callable[[StateInline, bool], bool]:
    """A `<` (width 1) or `\\<` (width 2) that CommonMark shows as text but a looser HTML reader
    would take for the start of a tag: marked, to be written `&lt;` (which shows the same)."""

    def rule(state: StateInline, silent: bool) -> bool:
        pos = state.pos
        if (
            not silent
            and state.src.startswith("\\<"[2 - width :], pos)
            and _TAG_START.match(state.src, pos + width)
        ):
            token = state.push(STRAY_LT, "", 0)
            token.meta["span"] = (pos, pos + width, -1)
        return False

    return rule


def _build_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True})
    md.validateLink = lambda url: True  # type: ignore[method-assign]  # see every destination
    block, inline = md.block.ruler, md.inline.ruler
    for name in ("paragraph", "lheading", "html_block"):
        rule = block.__rules__[block.__find__(name)]
        rule.fn = _block_with_lines(rule.fn)
    rule = block.__rules__[block.__find__("heading")]
    rule.fn = _heading(rule.fn)
    rule = block.__rules__[block.__find__("reference")]
    rule.fn = _reference(rule.fn)
    for name, kind, label_at in (("link", "link_open", 0), ("image", "image", 1),
                                 ("autolink", "link_open", None),
                                 ("html_inline", "html_inline", None)):
        rule = inline.__rules__[inline.__find__(name)]
        rule.fn = _spanned(rule.fn, kind, label_at)
    inline.before("escape", STRAY_LT + "_escaped", _stray(2))  # before `\\<` is an escape
    inline.push(STRAY_LT, _stray(1))  # after every rule that reads `<` as markup
    block.__compile__()
    inline.__compile__()
    return md


_MD = _build_parser()

# --------------------------------------------------------------------------------------------
# Finding what to rewrite
# --------------------------------------------------------------------------------------------


def _inline_edits(text: str, token: Token, hosts: Collection[str]) -> Iterable[Edit]:
    source: _Source | None = token.meta.get("source")
    children = token.children or []
    content = token.content
    if source is None:  # never seen; shown as text rather than trusted
        if any(child.type in ("html_inline", "link_open", "image") for child in children):
            yield 0, len(text), _inert(text)
        return
    for i, child in enumerate(children):
        span = child.meta.get("span")
        if span is None:
            continue
        start, end, label_end = span
        if child.type == PENDING_IMAGE:
            yield (*source.span(start, start + 1), "")
        elif child.type == STRAY_LT:
            yield (*source.span(start, end), "&lt;")
        elif child.type == "link_open" and child.markup == "autolink":
            if not _url_safe(str(child.attrGet("href") or "")):
                yield (*source.span(start, start + 1), "&lt;")
        elif child.type in ("link_open", "image"):
            href = str(child.attrGet("href" if child.type == "link_open" else "src") or "")
            inline_form = label_end >= 0 and end > label_end + 1 and content[label_end + 1] == "("
            if child.type == "image" and not _image_allowed(href, hosts):
                yield (*source.span(start, start + 2), "[image" if label_end == start + 2 else "[")
            if inline_form and not _url_safe(href):
                yield (*source.span(label_end + 1, end), "(#)")
        elif child.type == "html_inline":
            tag = content[start:end]
            name = _TAG_NAME.match(tag)
            if name and not name.group(1) and name.group(2).lower() in _REMOVED_WITH_CONTENT:
                end = _closing(children, i, name.group(2).lower(), content)
                yield (*source.span(start, end), "")
            elif (cleaned := _clean_tag(tag, hosts)) != tag:
                yield (*source.span(start, end), cleaned)


def _closing(children: list[Token], index: int, name: str, content: str) -> int:
    """The end of the closing tag of `name` after children[index], else of the content."""
    for child in children[index + 1 :]:
        if child.type == "html_inline" and "span" in child.meta:
            start, end, _ = child.meta["span"]
            match = _TAG_NAME.match(content[start:end])
            if match and match.group(1) and match.group(2).lower() == name:
                return int(end)
    return len(content)


def _html_block_edit(text: str, token: Token, hosts: Collection[str]) -> Iterable[Edit]:
    cleaned = _clean_html(token.content, hosts)
    if cleaned == token.content:
        return
    if token.content.endswith("\n") and not cleaned.endswith("\n"):
        cleaned += "\n"
    source: _Source | None = token.meta.get("source")
    if source is None or not source.lines:
        yield 0, len(text), _inert(text)
        return
    lines = source.lines
    # Each new line keeps the container markers (`> `, list indentation) of the line it replaces.
    prefixes = [""] + [
        text[start + length - pad : lines[k + 1][1]]
        for k, (_, start, length, pad) in enumerate(lines[:-1])
    ]
    new_lines = cleaned.split("\n")
    pad = lines[0][3]
    if new_lines[0].startswith(" " * pad):  # the first line keeps its own indentation
        new_lines[0] = new_lines[0][pad:]
    out: list[str] = []
    for k, line in enumerate(new_lines):
        if k:
            out.append("\n")
            if line or k < len(new_lines) - 1:
                out.append(prefixes[min(k, len(prefixes) - 1)])
        out.append(line)
    yield lines[0][1], lines[-1][1] + lines[-1][2] - lines[-1][3], "".join(out)


_INERT = re.compile(r"([!-/:-@\[-`{-~])")


def _inert(text: str) -> str:
    """Every ASCII punctuation character backslash-escaped (`<` as `&lt;`, which no HTML reader
    takes for a tag): the same characters, no markup."""
    return _INERT.sub(r"\\\1", text).replace("\\<", "&lt;")


def _parse(text: str, references: dict[str, Any] | None, pending: bool) -> tuple[
    list[Token], dict[str, Any]
]:
    env: dict[str, Any] = {"sanitize_edits": [], "sanitize_pending": pending}
    if references:
        env["references"] = dict(references)
    return _MD.parse(text, env), env


def _parse_somehow(text: str, references: dict[str, Any] | None, pending: bool) -> tuple[
    str, list[Token], dict[str, Any]
]:
    """Parse `text`; where the parser fails (markdown-it-py 4.3 can index past a last line that
    has no newline, e.g. in `> 1. <!--` + `> `), the text with a final newline, else inert."""
    for candidate in (text, text + "\n", _inert(text)):
        try:
            return candidate, *_parse(candidate, references, pending)
        except Exception:  # a bug of the parser: try the next form
            continue
    return _inert(text), [], {"sanitize_edits": []}


def _edits(text: str, tokens: list[Token], env: dict[str, Any],
           hosts: Collection[str]) -> list[Edit]:
    edits: list[Edit] = list(env["sanitize_edits"])
    for token in tokens:
        if token.type == "inline":
            edits.extend(_inline_edits(text, token, hosts))
        elif token.type == "html_block":
            edits.extend(_html_block_edit(text, token, hosts))
    return [edit for edit in edits if text[edit[0] : edit[1]] != edit[2]]


def _apply(text: str, edits: list[Edit]) -> str:
    out: list[str] = []
    pos = 0
    for start, end, replacement in sorted(edits, key=lambda edit: (edit[0], -edit[1])):
        if start < pos:  # inside a span already rewritten (removed with its element)
            continue
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


class Cleaned:
    """The result of sanitizing one document: the text, and the tokens of its last parse."""

    def __init__(self, text: str, tokens: list[Token], references: dict[str, Any],
                 parsed_chars: int) -> None:
        self.text = text
        self.tokens = tokens
        self.references = references
        self.parsed_chars = parsed_chars


def clean_document(
    text: str,
    *,
    image_hosts: Collection[str] = (),
    references: dict[str, Any] | None = None,
    pending_images: bool = False,
) -> Cleaned:
    """Rewrite `text` until a parse finds nothing to rewrite. `references` are definitions made
    earlier in the same document; `pending_images` treats an image whose reference is not
    defined (yet) as an image (a stream does not know what is defined further on)."""
    text = text.replace("\x00", "")
    hosts = frozenset(host.strip().lower().rstrip(".") for host in image_hosts)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    parsed = 0
    for _ in range(_MAX_ROUNDS):
        text, tokens, env = _parse_somehow(text, references, pending_images)
        parsed += len(text)
        edits = _edits(text, tokens, env, hosts)
        if not edits:
            return Cleaned(text, tokens, env.get("references", {}), parsed)
        text = _apply(text, edits)
    text, tokens, env = _parse_somehow(_inert(text), references, pending_images)  # unsettled
    return Cleaned(text, tokens, env.get("references", {}), parsed + len(text))


def sanitize(text: str, *, image_hosts: Collection[str] = ()) -> str:
    """`text` without script-capable markup or images from hosts not in `image_hosts`;
    unchanged when it has none. Idempotent."""
    text = text.replace("\x00", "")
    if not any(trigger in text for trigger in _TRIGGERS):
        return text
    return clean_document(text, image_hosts=image_hosts).text


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------

# A place where a document may be cut in two that parse as the whole does: after a blank line,
# before a line that starts in column 0 (nothing open can continue there).
_CUT = re.compile(r"\n[ \t]*\n(?=[^ \t\n])")
# Pieces without these characters cannot finish or start anything that is rewritten.
_INERT_PIECE = re.compile(r"[^\n\r<>\[\]()`~&;:!\\\x00]*")
_UNCLOSED_TAG = re.compile(r"<[^>]*\Z")
_UNCLOSED_LABEL = re.compile(r"!?\[[^\]]*\Z")
_UNCLOSED_DESTINATION = re.compile(r"!?\[[^\[\]]*\]\([^)]*\Z")
_DEFINITION = re.compile(r"^[ \t>]*\[", re.MULTILINE)
_BACKTICKS = re.compile(r"`+")
_EXAMINE_EVERY = 96  # characters: below this growth a tail is not parsed again


def _line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer("\n", text))]


def _line_count(text: str) -> int:
    return text.count("\n") + (0 if not text or text.endswith("\n") else 1)


def _unmatched_backticks(text: str) -> int | None:
    """Where the first backtick run without a closing run of its length starts."""
    runs = [(m.start(), len(m.group())) for m in _BACKTICKS.finditer(text)]
    i = 0
    while i < len(runs):
        start, length = runs[i]
        closer = next((j for j in range(i + 1, len(runs)) if runs[j][1] == length), None)
        if closer is None:
            return start
        i = closer + 1
    return None


def _settled(cleaned: Cleaned) -> bool:
    """Text after this document cannot change how it parses: it ends with a blank line and
    leaves no fence, HTML block or list open."""
    text = cleaned.text
    if not text:
        return True
    if not re.search(r"(?:\A|\n)[ \t]*\n\Z", text):
        return False
    lines = _line_count(text)
    for token in cleaned.tokens:
        if token.type in ("fence", "html_block", "code_block") and token.map and (
            token.map[1] >= lines
        ):
            return False
    top = [token for token in cleaned.tokens if token.level == 0 and token.nesting != 1]
    return not top or top[-1].type not in ("bullet_list_close", "ordered_list_close")


def _stable_length(cleaned: Cleaned) -> int:
    """How much of a sanitized, still growing text is final: up to the block still being
    written when that block is raw HTML or a reference definition, or up to an unfinished tag,
    link or code span in it. Code is final as it comes."""
    text = cleaned.text
    lines = _line_count(text)
    starts = _line_starts(text)
    last: Token | None = None
    for token in cleaned.tokens:
        if token.map and token.map[1] >= lines and token.nesting != -1:
            last = token
    if last is None:  # every block is finished: only a reference definition may not be
        blank = list(re.finditer(r"\n[ \t]*\n", text))
        region = blank[-1].end() if blank else 0
    else:
        region = starts[min(last.map[0], len(starts) - 1)] if last.map else 0
        if last.type == "html_block":
            return region
        if last.type in ("fence", "code_block"):
            return len(text)
    cut = len(text)
    paragraph = text[region:]
    for match in _DEFINITION.finditer(paragraph):
        cut = min(cut, region + match.start())
        break
    for pattern in (_UNCLOSED_TAG, _UNCLOSED_LABEL, _UNCLOSED_DESTINATION):
        if match := pattern.search(paragraph):
            cut = min(cut, region + match.start())
    if (ticks := _unmatched_backticks(paragraph)) is not None:
        cut = min(cut, region + ticks)
    return cut


class StreamSanitizer:
    """Sanitizes a reply that arrives in pieces: each `feed` returns the next part of the
    sanitized text that is safe to show now, with work proportional to the piece.

    The text is cut where CommonMark blocks cannot reach back (a blank line, then a line in
    column 0, with no fence, HTML block or list open): what lies before a cut is sanitized once
    and never again, with the reference definitions it made passed on. Only the tail after the
    last cut is parsed again, and only when a piece could change it (a piece of letters, digits,
    spaces and most punctuation is appended as it is) and has grown by `_EXAMINE_EVERY`
    characters or a quarter of its length, so the total work is linear in the reply's length;
    before anything is shown, the reply's first `_EXAMINE_EVERY` characters are examined at each
    piece, so that the first delta is not held for them.

    What is shown is always sanitized text (a fixed point of sanitizing) and holds back the part
    of the tail that could still change: an HTML block being written, a reference definition, an
    unfinished tag, link or code span. A reference definition arriving later cannot make shown
    text dangerous: a definition's destination is sanitized where it is defined, and an image
    whose reference is not defined yet is already shown as a link. `text()` is the whole
    sanitized reply, what is stored and answered; the parts add up to it unless later text
    changed what was already shown (rare: then nothing more is shown and `text()` is
    authoritative).
    """

    def __init__(self, *, image_hosts: Collection[str] = ()) -> None:
        self._hosts = tuple(image_hosts)
        self._parts: list[str] = []
        self._references: dict[str, Any] = {}
        self._done = ""  # sanitized text before the last cut
        self._tail: list[str] = []  # raw text after it
        self._tail_length = 0
        self._examined = 0  # how much of the tail the last examination saw
        self._shown = ""  # what was shown of the tail
        self._held = False  # the last examination held something back
        self._dirty = False  # a piece that could matter arrived since
        self._stalled = False
        self._final: tuple[str, str] | None = None
        self.parsed_chars = 0  # characters handed to the parser, for tests of linearity

    @property
    def raw(self) -> str:
        """Everything fed so far, as received."""
        return "".join(self._parts)

    def feed(self, piece: str) -> str:
        piece = piece.replace("\x00", "")
        if not piece:
            return ""
        self._parts.append(piece)
        self._tail.append(piece)
        self._tail_length += len(piece)
        inert = _INERT_PIECE.fullmatch(piece) is not None
        if inert and not self._dirty:
            if self._held:
                return ""
            self._examined = self._tail_length
            self._shown += piece
            return "" if self._stalled else piece
        self._dirty = True
        grown = self._tail_length - self._examined
        # Until something is shown, the short start of a reply is examined at every piece: the
        # first delta is not held back for `_EXAMINE_EVERY` characters ("Hello!" would be),
        # at a bounded cost (at most `_EXAMINE_EVERY` pieces of at most that many characters).
        # Not with a `<` in it: an HTML tag cut between pieces reads as text at first.
        opening = (not self._done and not self._shown and self._tail_length <= _EXAMINE_EVERY
                   and not any("<" in part for part in self._tail))
        if grown < max(_EXAMINE_EVERY, self._examined // 4) and not opening:
            return ""
        return self._examine()

    def _clean(self, text: str) -> Cleaned:
        cleaned = clean_document(text, image_hosts=self._hosts, references=self._references,
                                 pending_images=True)
        self.parsed_chars += cleaned.parsed_chars
        return cleaned

    def _show(self, text: str) -> str:
        """Extend what is shown of the tail to `text`, if it extends it."""
        if self._stalled or not text.startswith(self._shown):
            self._stalled = self._stalled or not self._shown.startswith(text)
            return ""
        delta, self._shown = text[len(self._shown) :], text
        return delta

    def _commit(self, tail: str) -> tuple[str, str]:
        """Sanitize the tail up to its last cut once and for all; the delta shown and the rest."""
        cuts = list(_CUT.finditer(tail))
        if not cuts:
            return "", tail
        cut = cuts[-1].end()
        head = self._clean(tail[:cut])
        if not _settled(head):
            return "", tail
        for label, definition in head.references.items():
            self._references.setdefault(label, definition)
        delta = ""
        if self._shown.startswith(head.text):
            self._shown = self._shown[len(head.text) :]
        else:
            delta = self._show(head.text)
            self._shown = ""
        self._done += head.text
        return delta, tail[cut:]

    def _examine(self) -> str:
        tail = "".join(self._tail)
        delta, tail = self._commit(tail)
        self._tail, self._tail_length = [tail], len(tail)
        cleaned = self._clean(tail)
        stable = _stable_length(cleaned)
        shown = cleaned.text[:stable]
        if stable < len(cleaned.text) and self._clean(shown).text != shown:
            shown = ""  # a prefix that would itself be rewritten is not shown
        self._held = stable < len(cleaned.text)
        self._examined, self._dirty = self._tail_length, False
        if len(shown) > len(self._shown):
            delta += self._show(shown)
        return delta

    def _final_tail(self) -> str:
        tail = "".join(self._tail)
        if self._final is None or self._final[0] != tail:
            self._final = (tail, self._clean(tail).text)
        return self._final[1]

    def text(self) -> str:
        """The whole reply sanitized: what is stored and answered."""
        return self._done + self._final_tail()

    def finish(self) -> str:
        """The rest of the sanitized reply once the vendor is done."""
        tail = self._final_tail()
        return self._show(tail) if len(tail) >= len(self._shown) else ""
