"""Estimated cost of a reply from a pricing table: the packaged `data/pricing.json` (vendors'
public prices, dated), or the operator's own file (`LLM_PRICING_FILE`, same format)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path

from llm_service.settings import ConfigurationError

_MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Price:
    input_per_token: Decimal
    output_per_token: Decimal


class PricingTable:
    def __init__(self, data: dict[str, object]) -> None:
        per = Decimal(str(data.get("per", 1_000_000)))
        models = data.get("models")
        if not isinstance(models, dict):
            raise ConfigurationError("the pricing file has no \"models\" object")
        self.updated = str(data.get("updated", ""))
        self._prices: dict[str, dict[str, Price]] = {}
        for provider, entries in models.items():
            self._prices[provider] = {
                model: Price(Decimal(str(p["input"])) / per, Decimal(str(p["output"])) / per)
                for model, p in entries.items()
            }

    @classmethod
    def load(cls, path: Path | None) -> PricingTable:
        try:
            if path is None:
                text = resources.files("llm_service").joinpath("data/pricing.json").read_text()
            else:
                text = path.read_text()
            return cls(json.loads(text))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"LLM_PRICING_FILE {path} cannot be read as a pricing table: {exc}"
            ) from None

    def models(self, provider: str) -> frozenset[str]:
        """The model ids the table lists for `provider`."""
        return frozenset(self._prices.get(provider, {}))

    def price(self, provider: str, model: str) -> Price | None:
        """The model's price: listed exactly, else under the longest listed prefix."""
        prices = self._prices.get(provider, {})
        if model in prices:
            return prices[model]
        prefixes = [m for m in prices if model.startswith(m)]
        return prices[max(prefixes, key=len)] if prefixes else None

    def cost(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> Decimal | None:
        """USD, to the millionth of a dollar; None (never zero) when the model has no price."""
        price = self.price(provider, model)
        if price is None:
            return None
        total = input_tokens * price.input_per_token + output_tokens * price.output_per_token
        return total.quantize(_MICRO)
