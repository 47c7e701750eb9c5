"""The anthropic and google-genai SDKs (about 70 MB of the process between them) are imported on
the first call to their vendor, not when the service starts: a fresh interpreter that starts the
app and serves OpenAI chats has neither in `sys.modules`; its first Claude and Gemini chats load
them and are answered through them, even under a vendor deadline shorter than the import; what
each import made is then frozen out of full collections. A subprocess, because this test process
imported both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import asyncio, gc, json, sys, time
from pathlib import Path

import httpx2

from tests.conftest import Api, make_settings, vendor_settings
from tests.fakes.vendor import FakeVendor
from llm_service.app import create_app

SDKS = ("anthropic", "google.genai")
DEADLINE_S = 0.25
MODELS = {"openai": "gpt-4o-mini", "claude": "claude-haiku-4-5",
          "gemini": "gemini-3.1-flash-lite"}


def loaded() -> list[str]:
    return [name for name in SDKS if name in sys.modules]


async def main() -> None:
    seen = {"imported": loaded()}
    data = Path(sys.argv[1])
    with FakeVendor() as fake:
        # A deadline shorter than either import: loading the SDK is not part of the call's time.
        settings = make_settings(data, f"sqlite+aiosqlite:///{data / 'db.sqlite'}",
                                 LLM_UPSTREAM_TIMEOUT_S=DEADLINE_S, **vendor_settings(fake))
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            seen["started"] = loaded()
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                api = Api(app=app, client=client, settings=settings, backend="sqlite")
                for provider, model in MODELS.items():
                    body = {"apiKey": f"sk-{provider}-0123456789", "model": model}
                    r = await client.post(f"/llm/config/{provider}", json=body,
                                          headers=api.auth(1))
                    assert r.status_code == 200, r.text
                    seen[f"configured {provider}"] = loaded()
                    began = time.monotonic()
                    r = await client.post(f"/llm/chat/{provider}", json={"message": "hi"},
                                          headers=api.auth(1))
                    seen[f"chat {provider}"] = [r.status_code, loaded(),
                                                [rec.provider for rec in fake.requests]]
                    seen[f"slower than the deadline {provider}"] = (
                        time.monotonic() - began > DEADLINE_S)
                    seen[f"frozen after {provider}"] = gc.get_freeze_count()
    print(json.dumps(seen))


asyncio.run(main())
"""


def test_vendor_sdks_load_on_their_first_chat(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["imported"] == []
    assert seen["started"] == []
    assert seen["configured openai"] == []
    assert seen["chat openai"] == [200, [], ["openai"]]
    # Saving a Claude key checks nothing through the SDK; the first chat loads it.
    assert seen["configured claude"] == []
    assert seen["chat claude"] == [200, ["anthropic"], ["openai", "claude"]]
    assert seen["chat gemini"] == [200, ["anthropic", "google.genai"],
                                   ["openai", "claude", "gemini"]]
    # The first Claude chat took longer than the vendor deadline (the import) and still passed.
    assert seen["slower than the deadline claude"] is True
    # Each SDK's objects, once imported, are kept out of full collections (llm_service/heap.py).
    assert seen["frozen after openai"] == 0
    assert seen["frozen after claude"] > 0
    assert seen["frozen after gemini"] > seen["frozen after claude"]
