"""Prometheus metrics, served at `/metrics` when `LLM_METRICS_ENABLED` (with an optional bearer
token, `LLM_METRICS_TOKEN`). Each app has its own registry. When metrics are off, `NullMetrics`
takes every call and does nothing, so call sites never branch.

Every label takes its value from a bounded set, so a client or a vendor cannot grow the registry
without bound: the model is a known id (the model catalogue's ids and aliases, and the default
models), its longest known prefix (`gpt-4o-2024-08-06` counts as `gpt-4o`), else `other`; the method
is a standard one, else `other`; the route is the matched route's template, else `unmatched`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from llm_service.catalog import Catalog
from llm_service.providers.registry import default_model, provider_ids
from llm_service.settings import Settings

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OTHER = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def known_models(settings: Settings, catalog: Catalog) -> dict[str, frozenset[str]]:
    """Per provider, the model ids a metric label may name: the catalogue's and the default."""
    return {p: catalog.names(p) | {default_model(settings, p)} for p in provider_ids()}


def model_label(known: Iterable[str], model: str) -> str:
    """`model` when known, else its longest known prefix, else `other`."""
    prefixes = [m for m in known if model.startswith(m)]
    return max(prefixes, key=len) if prefixes else OTHER


class NullMetrics:
    enabled = False

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def vendor_call(self, provider: str, seconds: float) -> None:
        pass

    def vendor_error(self, provider: str, kind: str) -> None:
        pass

    def usage(self, provider: str, model: str, input_tokens: int, output_tokens: int,
              cost_usd: Decimal | None) -> None:
        pass

    def rejected(self, reason: str) -> None:
        pass

    def db_write_failed(self, what: str) -> None:
        pass


class Metrics(NullMetrics):
    enabled = True

    def __init__(self, models: Mapping[str, Iterable[str]]) -> None:
        self._models = {provider: frozenset(ids) for provider, ids in models.items()}
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter("llm_http_requests_total", "HTTP requests answered.",
                                 ["route", "method", "status"], registry=r)
        self._latency = Histogram("llm_http_request_duration_seconds",
                                  "Time to answer a request (to the first byte for streams).",
                                  ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self._vendor_latency = Histogram("llm_vendor_call_duration_seconds",
                                         "Vendor calls, retries included (streams: to the "
                                         "first piece).", ["provider"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self._vendor_errors = Counter("llm_vendor_errors_total", "Failed vendor calls.",
                                      ["provider", "kind"], registry=r)
        self._tokens = Counter("llm_tokens_total", "Tokens used, by direction.",
                               ["provider", "model", "direction"], registry=r)
        self._cost = Counter("llm_cost_usd_total", "Estimated cost of priced replies, USD.",
                             ["provider", "model"], registry=r)
        self._rejections = Counter("llm_rejections_total",
                                   "Requests refused by a rate limit, the concurrency cap or a "
                                   "budget.", ["reason"], registry=r)
        self._db_write_failures = Counter("llm_db_write_failures_total",
                                          "Writes after a paid vendor call given up on a "
                                          "database outage (history: an exchange not stored; "
                                          "budget: a reservation left to expire).", ["what"],
                                          registry=r)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else OTHER
        self._requests.labels(route, method, str(status)).inc()
        self._latency.labels(route, method).observe(seconds)

    def vendor_call(self, provider: str, seconds: float) -> None:
        self._vendor_latency.labels(provider).observe(seconds)

    def vendor_error(self, provider: str, kind: str) -> None:
        self._vendor_errors.labels(provider, kind).inc()

    def usage(self, provider: str, model: str, input_tokens: int, output_tokens: int,
              cost_usd: Decimal | None) -> None:
        model = model_label(self._models.get(provider, ()), model)
        self._tokens.labels(provider, model, "input").inc(input_tokens)
        self._tokens.labels(provider, model, "output").inc(output_tokens)
        if cost_usd is not None:
            self._cost.labels(provider, model).inc(float(cost_usd))

    def rejected(self, reason: str) -> None:
        self._rejections.labels(reason).inc()

    def db_write_failed(self, what: str) -> None:
        self._db_write_failures.labels(what).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
