"""The README documents every setting and the commands it tells a newcomer to run."""

from __future__ import annotations

import re
from pathlib import Path

from llm_service.settings import PROVIDERS, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    per_vendor = re.compile(rf"^LLM_({'|'.join(p.upper() for p in PROVIDERS)})_(\w+)$")
    missing = []
    for field in Settings.model_fields.values():
        alias = str(field.alias)
        match = per_vendor.match(alias)
        documented = f"LLM_<VENDOR>_{match.group(2)}" if match else alias
        if f"`{documented}`" not in README:
            missing.append(alias)
    assert missing == []


def test_the_two_commands_exist_and_are_executable() -> None:
    for command in ("bin/dev", "bin/test"):
        assert f"{command}  " in README or f"{command} " in README
        path = ROOT / command
        assert path.is_file() and path.stat().st_mode & 0o111


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bin/test" in ci and "CI=true" in ci
