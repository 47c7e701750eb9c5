"""The packaged model catalogue and its loader: the file is whole and sourced, the defaults are
alive on the catalogue's date, lookups fall back to family rules, cost matches PricingTable's
rounding and prices cached input, and a wrong file is refused with a sentence naming the entry."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llm_service.catalog import Catalog
from llm_service.settings import ConfigurationError

VENDORS = ("openai", "gemini", "claude", "qwen", "huggingface")
CATALOG_DAY = date(2026, 12, 1)
PACKAGED = Path(__file__).parents[2] / "src" / "llm_service" / "data" / "models.json"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def _raw() -> dict[str, Any]:
    return json.loads(PACKAGED.read_text())


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    return path


def _model(data: dict[str, Any], vendor: str, model_id: str) -> dict[str, Any]:
    return next(m for m in data["vendors"][vendor]["models"] if m["id"] == model_id)


def test_packaged_catalogue_loads_dated_with_every_vendor(catalog: Catalog) -> None:
    assert catalog.date == CATALOG_DAY
    assert set(catalog.vendors) == set(VENDORS)
    assert all(catalog.models(v) for v in VENDORS)


def test_a_path_argument_loads_that_file(tmp_path: Path) -> None:
    data = _raw()
    data["date"] = "2027-01-05"
    assert Catalog.load(_write(tmp_path, data)).date == date(2027, 1, 5)


def test_every_entry_and_family_rule_names_its_source() -> None:
    for vendor, entry in _raw()["vendors"].items():
        for item in [*entry["models"], *entry.get("families", [])]:
            source = item["source"]
            assert source.startswith("https://") or source.endswith(".py"), (vendor, item)


def test_every_unpriced_or_unmeasured_entry_says_why(catalog: Catalog) -> None:
    for vendor in VENDORS:
        for info in catalog.models(vendor):
            missing = None in (info.input, info.context_window, info.max_output)
            assert not missing or info.note, (vendor, info.id)


@pytest.mark.parametrize("vendor", VENDORS)
def test_default_and_cheapest_models_are_current_on_the_catalogue_date(
    catalog: Catalog, vendor: str
) -> None:
    for day in {CATALOG_DAY, catalog.date}:
        for model_id in (catalog.default_model(vendor), catalog.cheapest_model(vendor)):
            status = catalog.status(vendor, model_id, day)
            assert status is not None and status.status == "current", (vendor, model_id, day)
            assert status.shutdown is None


def test_the_seeds_old_defaults_are_listed_with_their_fate(catalog: Catalog) -> None:
    assert catalog.status("openai", "gpt-4o", CATALOG_DAY).status == "deprecated"
    assert catalog.status("claude", "claude-sonnet-4-5-20250929", CATALOG_DAY).status == "retired"
    assert catalog.status("gemini", "gemini-2.0-flash-exp", CATALOG_DAY).status == "retired"
    assert catalog.status("qwen", "qwen-max", CATALOG_DAY) is not None
    assert catalog.status("huggingface", "meta-llama/Llama-3.3-70B-Instruct", CATALOG_DAY)


def test_every_replacement_is_current_on_the_catalogue_date(catalog: Catalog) -> None:
    for vendor in VENDORS:
        for info in catalog.models(vendor):
            if info.replacement is not None:
                target = catalog.status(vendor, info.replacement, catalog.date)
                assert target is not None and target.status == "current", (vendor, info.id)


def test_an_alias_resolves_to_its_model(catalog: Catalog) -> None:
    info = catalog.model("claude", "claude-haiku-4-5-20251001")
    assert info is not None and info.listed and info.id == "claude-haiku-4-5"
    snapshot = catalog.model("openai", "gpt-4o-2024-08-06")
    assert snapshot is not None and snapshot.id == "gpt-4o"
    assert catalog.model("claude", "claude-sonnet-4-5").id == "claude-sonnet-4-5-20250929"


def test_a_listed_model_carries_prices_and_limits(catalog: Catalog) -> None:
    info = catalog.model("claude", "claude-sonnet-5-5")
    assert info is not None
    assert (info.input, info.output, info.cached_input) == (
        Decimal("2.00"), Decimal("10.00"), Decimal("0.20"),
    )
    assert (info.context_window, info.max_output) == (1_000_000, 128_000)
    assert info.capabilities.temperature is False
    assert info.capabilities.token_limit_field == "max_tokens"


def test_openai_reasoning_family_takes_no_temperature(catalog: Catalog) -> None:
    info = catalog.model("openai", "o7-preview")
    assert info is not None and not info.listed
    assert info.capabilities.temperature is False
    assert info.capabilities.token_limit_field == "max_completion_tokens"
    assert info.capabilities.reasoning is not None
    assert info.capabilities.reasoning.control == "reasoning_effort"
    assert (info.status, info.input, info.context_window) == (None, None, None)


def test_unknown_gpt5_and_gpt6_ids_are_reasoning_models(catalog: Catalog) -> None:
    for model_id in ("gpt-5.9-mini", "gpt-6.3-astra"):
        info = catalog.model("openai", model_id)
        assert info is not None and not info.listed, model_id
        assert info.capabilities.temperature is False
        assert info.capabilities.token_limit_field == "max_completion_tokens"


def test_unknown_older_openai_ids_keep_temperature(catalog: Catalog) -> None:
    info = catalog.model("openai", "gpt-4.1-mini")
    assert info is not None and info.capabilities.temperature is True


def test_unknown_claude_id_follows_the_claude_family(catalog: Catalog) -> None:
    info = catalog.model("claude", "claude-opus-9")
    assert info is not None and not info.listed
    assert info.capabilities.temperature is False
    assert info.capabilities.token_limit_field == "max_tokens"
    assert info.capabilities.reasoning is not None
    assert info.capabilities.reasoning.control == "effort"


def test_unknown_gemini_ids_follow_their_generation(catalog: Catalog) -> None:
    newer = catalog.model("gemini", "gemini-4-pro")
    assert newer is not None and not newer.listed
    assert newer.capabilities.token_limit_field == "maxOutputTokens"
    assert newer.capabilities.reasoning is not None
    assert newer.capabilities.reasoning.control == "thinking_level"
    older = catalog.model("gemini", "gemini-2.5-pro")
    assert older is not None and older.capabilities.reasoning is not None
    assert older.capabilities.reasoning.control == "thinking_budget"


def test_qwen3_open_model_needs_enable_thinking_false_without_streaming(
    catalog: Catalog,
) -> None:
    info = catalog.model("qwen", "qwen3-14b")
    assert info is not None and not info.listed
    reasoning = info.capabilities.reasoning
    assert reasoning is not None
    assert (reasoning.control, reasoning.non_streaming_requires) == ("enable_thinking", False)


def test_an_id_no_rule_matches_is_unknown(catalog: Catalog) -> None:
    assert catalog.model("openai", "davinci-002") is None
    assert catalog.model("nobody", "gpt-5.4") is None
    assert catalog.status("openai", "o7-preview", CATALOG_DAY) is None


def test_cost_prices_cached_input_at_the_cached_rate(catalog: Catalog) -> None:
    # gpt-5.4: $2.50 input, $0.25 cached, $15 output per 1M tokens.
    cost = catalog.cost("openai", "gpt-5.4", 10_000, 2_000, cached_input_tokens=8_000)
    assert cost == Decimal("0.037000")  # 2000*2.5e-6 + 8000*0.25e-6 + 2000*15e-6


def test_cost_without_a_cached_rate_prices_cached_tokens_as_input(catalog: Catalog) -> None:
    # gemini-3.1-pro-preview lists no cached rate: $2 input, $12 output.
    cost = catalog.cost("gemini", "gemini-3.1-pro-preview", 1_000, 100, cached_input_tokens=600)
    assert cost == Decimal("0.003200")


def test_cost_rounds_to_the_millionth_as_the_old_pricing_table_did(catalog: Catalog) -> None:
    # gpt-4o: $2.50 in, $10 out per 1M tokens; 123*2.5e-6 + 457*1e-5 = 0.0048775 -> 0.004878.
    assert catalog.cost("openai", "gpt-4o", 1_000_000, 3) == Decimal("2.500030")
    assert catalog.cost("openai", "gpt-4o", 123, 457) == Decimal("0.004878")


def test_cost_of_a_dated_snapshot_uses_its_base_price(catalog: Catalog) -> None:
    assert catalog.cost("claude", "claude-opus-4-8-20260901", 1_000_000, 0) == Decimal("5.000000")


def test_cost_is_none_never_zero_without_a_price(catalog: Catalog) -> None:
    assert catalog.cost("qwen", "qwen3-32b", 1_000, 1_000) is None
    assert catalog.cost("openai", "o7-preview", 1_000, 1_000) is None
    assert catalog.cost("huggingface", "meta-llama/Llama-3.3-70B-Instruct", 10, 10) is None


def test_cost_refuses_more_cached_than_input_tokens(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="cached_input_tokens"):
        catalog.cost("openai", "gpt-5.4", 10, 0, cached_input_tokens=11)


def test_retired_model_status_gives_date_and_replacement(catalog: Catalog) -> None:
    status = catalog.status("claude", "claude-sonnet-4-5-20250929", CATALOG_DAY)
    assert status is not None
    assert (status.status, status.shutdown, status.replacement) == (
        "retired", date(2026, 11, 30), "claude-sonnet-5-5",
    )


def test_deprecated_model_becomes_retired_on_its_shutdown_day(catalog: Catalog) -> None:
    before = catalog.status("openai", "gpt-4o", date(2027, 1, 13))
    on_the_day = catalog.status("openai", "gpt-4o", date(2027, 1, 14))
    assert before is not None and on_the_day is not None
    assert (before.status, before.shutdown, before.replacement) == (
        "deprecated", date(2027, 1, 14), "gpt-6.2-sol",
    )
    assert on_the_day.status == "retired"


def test_deprecated_model_without_a_vendor_date_stays_deprecated(catalog: Catalog) -> None:
    status = catalog.status("gemini", "gemini-3.5-flash", date(2030, 1, 1))
    assert status is not None
    assert (status.status, status.shutdown, status.replacement) == (
        "deprecated", None, "gemini-3.8-flash",
    )


@pytest.mark.parametrize("vendor", VENDORS)
def test_current_models_are_listed_first(catalog: Catalog, vendor: str) -> None:
    statuses = [info.status for info in catalog.models(vendor)]
    assert statuses == sorted(statuses, key=lambda s: s != "current")


def test_dashscope_regions_name_each_endpoint(catalog: Catalog) -> None:
    assert catalog.regions("qwen") == {
        "singapore": "https://dashscope-intl.aliyuncs.com",
        "beijing": "https://dashscope.aliyuncs.com",
        "virginia": "https://dashscope-us.aliyuncs.com",
        "hongkong": "https://cn-hongkong.dashscope.aliyuncs.com",
    }
    assert catalog.default_region("qwen") == "singapore"
    assert catalog.region_url("qwen") == "https://dashscope-intl.aliyuncs.com"
    assert catalog.region_url("qwen", "virginia") == "https://dashscope-us.aliyuncs.com"


def test_a_region_the_catalogue_does_not_name_has_no_url(catalog: Catalog) -> None:
    assert catalog.region_url("qwen", "https://attacker.example") is None
    assert catalog.region_url("openai", "singapore") is None
    assert catalog.regions("openai") == {}


def test_an_unknown_vendor_is_a_key_error_naming_it(catalog: Catalog) -> None:
    with pytest.raises(KeyError, match="nobody"):
        catalog.default_model("nobody")


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (
            lambda d: _model(d, "openai", "gpt-5.4").__setitem__("input", -1),
            "vendors.openai.models[N] 'gpt-5.4'.input: Input should be greater than or equal to 0",
        ),
        (
            lambda d: _model(d, "openai", "gpt-5.4").__setitem__("colour", "red"),
            "vendors.openai.models[N] 'gpt-5.4'.colour: Extra inputs are not permitted",
        ),
        (
            lambda d: _model(d, "claude", "claude-opus-4-5").__setitem__("shutdown", "2027-02-30"),
            "vendors.claude.models[N] 'claude-opus-4-5'.shutdown: Input should be a valid date",
        ),
        (
            lambda d: [_model(d, "claude", "claude-opus-4-5").pop(k) for k in ("shutdown", "note")],
            "vendors.claude.models[N] 'claude-opus-4-5': a deprecated model needs its shutdown",
        ),
        (
            lambda d: _model(d, "claude", "claude-opus-4-5").__setitem__("replacement", "x-1"),
            "vendors.claude: 'claude-opus-4-5' names replacement 'x-1', which is not another",
        ),
        (
            lambda d: d["vendors"]["qwen"].__setitem__("defaultModel", "qwen-max-latest"),
            "vendors.qwen: defaultModel 'qwen-max-latest' is not a listed current model",
        ),
        (
            lambda d: d["vendors"]["qwen"]["regions"].__setitem__("mars", "http://mars.example/x"),
            "vendors.qwen.regions.mars: String should match pattern",
        ),
        (
            lambda d: _model(d, "gemini", "gemini-3.8-flash").__setitem__("source", "somewhere"),
            "vendors.gemini.models[N] 'gemini-3.8-flash'.source: must be an https://",
        ),
        (lambda d: d.__setitem__("date", "yesterday"), "date: must be a date written YYYY-MM-DD"),
        (lambda d: d.__setitem__("date", 1796083200), "date: must be a date written YYYY-MM-DD"),
    ],
)
def test_a_broken_file_is_refused_naming_the_entry(
    tmp_path: Path, break_it: Any, expected: str
) -> None:
    data = _raw()
    break_it(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigurationError) as refused:
        Catalog.load(path)
    # [N] stands for the entry's position, which moves as the catalogue is edited.
    pattern = re.escape(f"model catalogue {path} is refused: {expected}")
    pattern = pattern.replace(r"\[N\]", r"\[\d+\]")
    assert re.match(pattern, str(refused.value)), str(refused.value)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"cannot be read as JSON"):
        Catalog.load(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.json cannot be read"):
        Catalog.load(tmp_path / "missing.json")
