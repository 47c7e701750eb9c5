"""The LiteLLM proxy on the bench's fake vendor, with the same wrk and the same three turns as
bench/run's chat scenario, for the side-by-side figure of bench/README.md. LiteLLM is not a
dependency of this project: install it in a virtualenv of its own, outside the repository, and
pass its `litellm` command:

    python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'
    .venv/bin/python -m bench.litellm_side /tmp/litellm/bin/litellm

One proxy worker, a master key (it refuses to start without one), no database; 10 s at 1, 16 and
64 connections after a 3 s warm-up. Everything listens on 127.0.0.1 and is stopped at the end.
"""
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx2

from bench.procs import free_port
from bench.wrk import lua_script, run_wrk

MASTER = "sk-" + os.urandom(32).hex()
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [
    {"role": "user", "content": "Previous message"},
    {"role": "assistant", "content": "Previous response"},
    {"role": "user", "content": "Hello, how are you?"}], "max_tokens": 100}).encode()


async def wait(url: str, seconds: float = 120) -> None:
    async with httpx2.AsyncClient() as client:
        for _ in range(int(seconds * 4)):
            try:
                r = await client.get(url)
                if r.status_code < 500:
                    return
            except httpx2.HTTPError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"{url} did not answer")


async def main(litellm: str) -> None:
    tmp = Path(tempfile.mkdtemp())
    vport, lport = free_port(), free_port()
    vendor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fake_vendor", "--port", str(vport), "--max-seconds", "900",
        stdout=asyncio.subprocess.DEVNULL)
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"""model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{vport}/v1
      api_key: sk-bench
litellm_settings:
  set_verbose: false
""")
    env = dict(os.environ, LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=MASTER)
    proxy = await asyncio.create_subprocess_exec(
        litellm, "--config", str(cfg), "--port", str(lport), "--host", "127.0.0.1",
        "--num_workers", "1", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait(f"http://127.0.0.1:{lport}/health/liveliness")
        script = tmp / "s.lua"
        script.write_text(lua_script("POST", BODY, {"Content-Type": "application/json",
                                                    "Authorization": f"Bearer {MASTER}"}, True))
        url = f"http://127.0.0.1:{lport}/chat/completions"
        await run_wrk(url, script, 16, 3)
        for conns in (1, 16, 64):
            r = await run_wrk(url, script, conns, 10)
            errors = sum(r.socket_errors.values())
            print(f"litellm {conns} conns: {r.rps:,.0f} req/s p50 {r.p50_ms:.2f} ms "
                  f"p99 {r.p99_ms:.2f} ms non-2xx {r.non_2xx} errors {errors}", flush=True)
    finally:
        for p in (proxy, vendor):
            if p.returncode is None:
                p.terminate()
                await p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
