"""The model catalogue: per vendor, the models people use (ids, aliases, status, prices, limits,
request capabilities) and family rules for ids it does not list, from the packaged, dated
`data/models.json` or an operator's file in the same format.

The file is validated whole on load (unknown fields, bad dates, negative prices, dangling
replacements are refused) so a wrong file fails at start-up with one sentence naming the entry,
not at the first chat. Cost is USD quantized to the millionth, None (never zero) when the model
has no price. `load_catalog` reads each file once per process: the registry, the metrics and the
configuration defaults all answer from the same catalogue.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from llm_service.settings import ConfigurationError

_MICRO = Decimal("0.000001")
# A dated snapshot id (gpt-4o-2024-08-06, claude-haiku-4-5-20251001) prices like its base id.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
# A source is a vendor page or a file of an installed SDK (anthropic/_data/deprecated_models.py).
_SOURCE = re.compile(r"^(https://\S+|[A-Za-z_][\w.]*(/[\w.-]+)+\.py)$")

Status = Literal["current", "deprecated", "retired"]
ReasoningControl = Literal[
    "reasoning_effort",  # OpenAI-style `reasoning_effort`
    "effort",  # Anthropic adaptive thinking, `output_config.effort`
    "thinking_budget",  # a token budget (Anthropic `budget_tokens`, Gemini 2.5 `thinkingBudget`)
    "thinking_level",  # Gemini 3+ `thinkingConfig.thinkingLevel`
    "enable_thinking",  # DashScope Qwen3 `enable_thinking`
]


def _source(value: str) -> str:
    if not _SOURCE.match(value):
        raise ValueError("must be an https:// URL or an SDK file path such as openai/types/x.py")
    return value


def _iso_date(value: object) -> object:
    # Only "YYYY-MM-DD": pydantic alone would also take timestamps and datetimes.
    if not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"is not a regular expression: {exc}") from None
    return value


Source = Annotated[str, AfterValidator(_source)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Price = Annotated[Decimal, Field(ge=0)]
Tokens = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class Reasoning(_Strict):
    """How the model's thinking is controlled."""

    control: ReasoningControl
    # The value the control must carry on a non-streaming call (Qwen3 open models: False).
    non_streaming_requires: bool | None = None


class Capabilities(_Strict):
    """What a request to the model may carry."""

    temperature: bool
    token_limit_field: Literal["max_completion_tokens", "max_tokens", "maxOutputTokens"]
    reasoning: Reasoning | None
    vision: bool
    pdf: bool


class ModelEntry(_Strict):
    id: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    status: Status
    # Deprecated: the announced shutdown; retired: the day it was shut down. None only when the
    # vendor gives no date, and then the note says so.
    shutdown: IsoDate | None = None
    replacement: str | None = None
    input: Price | None
    output: Price | None
    cached_input: Price | None
    context_window: Tokens | None
    max_output: Tokens | None
    capabilities: Capabilities
    source: Source
    note: str | None = None

    @model_validator(mode="after")
    def _lifecycle(self) -> Self:
        if self.status == "current" and (self.shutdown or self.replacement):
            raise ValueError("a current model has no shutdown or replacement")
        if self.status != "current" and self.shutdown is None and not self.note:
            raise ValueError(f"a {self.status} model needs its shutdown date, or a note on why not")
        if self.status != "current" and not self.replacement:
            raise ValueError(f"a {self.status} model needs a replacement")
        if (self.input is None) != (self.output is None):
            raise ValueError("input and output prices are both given or both null")
        if self.input is None and not self.note:
            raise ValueError("an unpriced model needs a note saying why")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


class FamilyRule(_Strict):
    """Capabilities of ids the catalogue does not list, matched from the start of the id."""

    pattern: Annotated[str, AfterValidator(_pattern)]
    capabilities: Capabilities
    source: Source
    note: str | None = None


class VendorEntry(_Strict):
    default_model: str
    cheapest_model: str
    regions: dict[str, Annotated[str, Field(pattern=r"^https://[^/\s]+$")]] | None = None
    default_region: str | None = None
    regions_source: Source | None = None
    regions_note: str | None = None
    families: tuple[FamilyRule, ...] = ()
    models: tuple[ModelEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Self:
        by_name: dict[str, ModelEntry] = {}
        for entry in self.models:
            for name in entry.names:
                if name in by_name:
                    raise ValueError(f"{name!r} is listed twice")
                by_name[name] = entry
        for entry in self.models:
            if entry.replacement is not None:
                target = by_name.get(entry.replacement)
                if target is None or target is entry:
                    raise ValueError(
                        f"{entry.id!r} names replacement {entry.replacement!r}, "
                        "which is not another listed model"
                    )
        for field in ("default_model", "cheapest_model"):
            name = getattr(self, field)
            if name not in by_name or by_name[name].status != "current":
                raise ValueError(f"{to_camel(field)} {name!r} is not a listed current model")
        if self.regions:
            if self.default_region not in self.regions or self.regions_source is None:
                raise ValueError("regions need a defaultRegion among them and a regionsSource")
        elif self.default_region is not None:
            raise ValueError("defaultRegion without regions")
        return self


class CatalogFile(_Strict):
    date: IsoDate
    currency: Literal["USD"]
    per: Literal[1_000_000]
    about: str | None = None
    vendors: dict[str, VendorEntry] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model as the service sees it. `listed` is False for an id matched only by a family
    rule: then status, prices and limits are unknown (None) and only capabilities are given."""

    vendor: str
    id: str
    listed: bool
    capabilities: Capabilities
    source: str
    status: Status | None = None
    shutdown: IsoDate | None = None
    replacement: str | None = None
    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None
    context_window: int | None = None
    max_output: int | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """The lifecycle of a listed model on a given day; `status` is "retired" once a deprecated
    model's shutdown date has come."""

    status: Status
    shutdown: date | None
    replacement: str | None


class Catalog:
    def __init__(self, data: CatalogFile) -> None:
        self.date = data.date
        self._vendors = data.vendors
        self._by_name: dict[str, dict[str, ModelEntry]] = {
            vendor: {name: e for e in v.models for name in e.names}
            for vendor, v in data.vendors.items()
        }
        self._families = {
            vendor: [(re.compile(f.pattern), f) for f in v.families]
            for vendor, v in data.vendors.items()
        }

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        """The packaged catalogue, or the file at `path`; a wrong file raises ConfigurationError
        naming the file, the entry and what is wrong with it."""
        label = "the packaged model catalogue" if path is None else f"model catalogue {path}"
        try:
            if path is None:
                text = resources.files("llm_service").joinpath("data/models.json").read_text()
            else:
                text = path.read_text()
            raw = json.loads(text, parse_float=Decimal)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{label} cannot be read as JSON: {exc}") from None
        try:
            return cls(CatalogFile.model_validate(raw))
        except ValidationError as exc:
            raise ConfigurationError(f"{label} is refused: {_describe(exc, raw)}") from None

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(self._vendors)

    def models(self, vendor: str) -> tuple[ModelInfo, ...]:
        """Every listed model of the vendor, in the file's order (current ones first)."""
        v = self._vendors.get(vendor)
        return tuple(self._info(vendor, e) for e in v.models) if v else ()

    def model(self, vendor: str, model_id: str) -> ModelInfo | None:
        """The listed model by id or alias, else the first family rule matching the id
        (capabilities only), else None."""
        entry = self._entry(vendor, model_id)
        if entry is not None:
            return self._info(vendor, entry)
        for pattern, family in self._families.get(vendor, ()):
            if pattern.match(model_id):
                return ModelInfo(
                    vendor=vendor, id=model_id, listed=False,
                    capabilities=family.capabilities, source=family.source, note=family.note,
                )
        return None

    def cost(
        self,
        vendor: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
    ) -> Decimal | None:
        """USD, to the millionth of a dollar; None (never zero) when the model has no price.

        `input_tokens` counts all prompt tokens, `cached_input_tokens` the part of them read
        from the vendor's cache (OpenAI's convention), priced at the cached rate where the
        model has one, else at the input rate."""
        if not 0 <= cached_input_tokens <= input_tokens:
            raise ValueError("cached_input_tokens must be between 0 and input_tokens")
        entry = self._priced(vendor, model)
        if entry is None or entry.input is None or entry.output is None:
            return None
        cached_rate = entry.input if entry.cached_input is None else entry.cached_input
        total = (
            (input_tokens - cached_input_tokens) * entry.input
            + cached_input_tokens * cached_rate
            + output_tokens * entry.output
        ) / 1_000_000
        return total.quantize(_MICRO)

    def status(self, vendor: str, model_id: str, today: date) -> ModelStatus | None:
        """The listed model's lifecycle on `today`; None for an id the catalogue does not list."""
        entry = self._entry(vendor, model_id)
        if entry is None:
            return None
        status = entry.status
        if status == "deprecated" and entry.shutdown is not None and entry.shutdown <= today:
            status = "retired"
        return ModelStatus(status, entry.shutdown, entry.replacement)

    def default_model(self, vendor: str) -> str:
        return self._vendor(vendor).default_model

    def has_vendor(self, vendor: str) -> bool:
        return vendor in self._vendors

    def names(self, vendor: str) -> frozenset[str]:
        """Every listed id and alias of the vendor (empty for a vendor it does not list)."""
        return frozenset(self._by_name.get(vendor, {}))

    def capabilities(self, vendor: str, model_id: str) -> Capabilities | None:
        """What a request to the model may carry (listed, else by family rule); None when the
        catalogue knows nothing of the id, and the adapter keeps its vendor's defaults."""
        info = self.model(vendor, model_id)
        return info.capabilities if info is not None else None

    def cheapest_model(self, vendor: str) -> str:
        return self._vendor(vendor).cheapest_model

    def regions(self, vendor: str) -> dict[str, str]:
        """Region name to endpoint origin (no path); empty for a vendor without regions."""
        return dict(self._vendor(vendor).regions or {})

    def default_region(self, vendor: str) -> str | None:
        return self._vendor(vendor).default_region

    def region_url(self, vendor: str, region: str | None = None) -> str | None:
        """The endpoint origin of `region` (the default region when None); None when the vendor
        has no regions or the catalogue does not name that region, so no other address is
        ever produced."""
        v = self._vendor(vendor)
        if not v.regions:
            return None
        return v.regions.get(region if region is not None else str(v.default_region))

    def _vendor(self, vendor: str) -> VendorEntry:
        try:
            return self._vendors[vendor]
        except KeyError:
            raise KeyError(f"the model catalogue has no vendor {vendor!r}") from None

    def _entry(self, vendor: str, model_id: str) -> ModelEntry | None:
        return self._by_name.get(vendor, {}).get(model_id)

    def _priced(self, vendor: str, model: str) -> ModelEntry | None:
        entry = self._entry(vendor, model)
        if entry is None and _SNAPSHOT.search(model):
            entry = self._entry(vendor, _SNAPSHOT.sub("", model))
        return entry

    @staticmethod
    def _info(vendor: str, e: ModelEntry) -> ModelInfo:
        return ModelInfo(
            vendor=vendor, id=e.id, listed=True, capabilities=e.capabilities, source=e.source,
            status=e.status, shutdown=e.shutdown, replacement=e.replacement, input=e.input,
            output=e.output, cached_input=e.cached_input, context_window=e.context_window,
            max_output=e.max_output, note=e.note,
        )


@functools.cache
def load_catalog(path: Path | None = None) -> Catalog:
    """The catalogue at `path` (None: the packaged one), read and validated once per process."""
    return Catalog.load(path)


def _describe(exc: ValidationError, raw: object) -> str:
    """The first error in one line: where (vendors.openai.models[2] 'gpt-5.4'.input), what."""
    error = exc.errors(include_url=False)[0]
    parts: list[str] = []
    node: object = raw
    for key in error["loc"]:
        node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
        if isinstance(key, int):
            label = f"[{key}]"
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                label += f" {node['id']!r}"
            parts[-1:] = [(parts[-1] if parts else "") + label]
        else:
            parts.append(str(key))
    where = ".".join(parts) or "the top level"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def _has(node: dict[str, object] | list[object], key: str | int) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(key, int) and 0 <= key < len(node)
