"""CPU of sanitizing a 27 KB markdown reply streamed in 3,000 deltas, and of one `sanitize()`.

    .venv/bin/python bench/sanitize_stream.py [path/to/an/older/sanitize.py ...]

Each module given (e.g. `git show 10031a0:src/llm_service/security/sanitize.py > /tmp/old.py`)
is measured beside the current one. CPU time of this process, one run each.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path[:0] = [str(Path(__file__).parents[1] / "src")]

from llm_service.security import sanitize as current  # noqa: E402

UNIT = (
    "Here is `code <b>` and a [link](https://example.com/a?b=1) and <b>bold</b> text, a < b, "
    "see (this): yes!\nA second line of the same paragraph, with *emphasis* and more words.\n\n"
    "- an item with [a reference][docs]\n- another item\n\n[docs]: https://example.com/docs\n\n"
    "```python\nif a < b:\n    print('<script>')\n\nx = [1]\n```\n\n"
)


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    text = (UNIT * (27_000 // len(UNIT) + 1))[:27_000]
    step = len(text) // 3000
    pieces = [text[i : i + step] for i in range(0, len(text), step)]
    for name, module in [*((p, load(p)) for p in sys.argv[1:]), ("current", current)]:
        began = time.process_time()
        stream = module.StreamSanitizer()
        "".join(stream.feed(piece) for piece in pieces) + stream.finish()
        streamed = time.process_time() - began
        began = time.process_time()
        module.sanitize(text)
        once = time.process_time() - began
        print(f"{name}: {len(text)} chars in {len(pieces)} deltas: stream {streamed:.2f} s CPU, "
              f"one sanitize() {once:.3f} s CPU")


if __name__ == "__main__":
    main()
