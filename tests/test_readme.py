"""The README documents every setting and the commands it tells a newcomer to run."""

from __future__ import annotations

from pathlib import Path

from llm_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    # The per-vendor overrides are read for every registered vendor, under one pattern.
    documented = ["LLM_<VENDOR>_BASE_URL", "LLM_<VENDOR>_DEFAULT_MODEL"]
    documented += [str(f.alias) for f in Settings.model_fields.values() if f.alias]
    assert [name for name in documented if f"`{name}`" not in README] == []


def test_the_two_commands_exist_and_are_executable() -> None:
    for command in ("bin/dev", "bin/test"):
        assert f"{command}  " in README or f"{command} " in README
        path = ROOT / command
        assert path.is_file() and path.stat().st_mode & 0o111


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bin/test" in ci and "CI=true" in ci
