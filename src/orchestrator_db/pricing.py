"""What an LLM call cost, from its model, provider and token counts (``genai-prices``' table).

``genai-prices`` (MIT, its price data ships inside the package) answers one call in ~0.35 ms,
which at OpenTelemetry ingest rates (thousands of prompts a second) would cost more than writing
the rows. So the price of a (provider, model, hour) is taken apart once: the table is asked for
the cost of a million tokens of each kind, at two scales, and when both agree (the price is
linear: no tiers that switch on the prompt's size) later prompts are priced with four
multiplications. Prompts above a tier's threshold, or larger than the probes, are asked of the
table every time. A model the table does not know costs 0 (``price`` returns None): never a guess.

Token counts follow the GenAI semantic conventions: ``tokens_input`` includes the cache reads
and writes, which are priced at their own rates.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

import genai_prices

# OpenTelemetry's gen_ai.provider.name (and the older gen_ai.system) values whose genai-prices
# provider id differs; others are tried as they are, then without a provider.
PROVIDER_ALIASES = {
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google",
    "google_genai": "google", "vertex_ai": "google", "gemini": "google",
    "aws.bedrock": "aws", "bedrock": "aws", "azure.ai.openai": "azure",
    "azure.ai.inference": "azure", "az.ai.openai": "azure", "az.ai.inference": "azure",
    "mistral_ai": "mistral", "mistralai": "mistral", "x_ai": "x-ai", "xai": "x-ai",
}
# The probes: prompts up to the largest one that agrees with the first are priced from rates.
SCALES = (1_000, 100_000, 1_000_000)
_MAX_TOKENS = 10**12  # as models.MAX_TOKENS: no real prompt comes near it


@dataclass(frozen=True)
class Rates:
    """A linear price: dollars per request and per token of each kind."""

    base: float
    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(self, tokens_input: int, tokens_output: int, cache_read: int, cache_write: int
             ) -> float:
        """The cost of one call (cache tokens are part of ``tokens_input``)."""
        uncached = max(tokens_input - cache_read - cache_write, 0)
        return (self.base + uncached * self.input + cache_read * self.cache_read
                + cache_write * self.cache_write + tokens_output * self.output)


def provider_id(provider: str | None) -> str | None:
    """Return the genai-prices provider id for an OpenTelemetry provider name (or None)."""
    if not provider:
        return None
    name = provider.strip().lower()
    return PROVIDER_ALIASES.get(name, name)


def _exact(model: str, provider: str | None, when: datetime, tokens_input: int,
           tokens_output: int, cache_read: int, cache_write: int) -> Decimal | None:
    """Ask genai-prices; None when it knows no price for the model."""
    usage = genai_prices.Usage(input_tokens=tokens_input, output_tokens=tokens_output,
                               cache_read_tokens=cache_read, cache_write_tokens=cache_write)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its advice about stale data is not ours to raise
        for candidate in ((provider, None) if provider else (None,)):
            try:
                result = genai_prices.calc_price(usage, model, provider_id=candidate,
                                                 genai_request_timestamp=when)
            except (LookupError, ValueError, ArithmeticError):
                continue
            return result.total_price
    return None


_lock = threading.Lock()  # rates are computed from worker threads and the event loop alike


# The last hour a datetime holds (datetime.max's float timestamp rounds up into the next one).
_LAST_HOUR = int(datetime.max.replace(tzinfo=UTC).timestamp()) // 3600 - 1


@lru_cache(maxsize=4096)
def _rates(model: str, provider: str | None, hour_number: int) -> tuple[Rates, int] | None:
    """The linear rates of a model at an hour and the prompt size up to which they hold.

    None if the table has no price for the model. Tiered prices (a higher rate for prompts
    above 200k tokens, say) make a larger probe disagree with the smallest: the rates then hold
    only up to the last probe that agreed.
    """
    hour = datetime.fromtimestamp(hour_number * 3600, UTC)
    with _lock:
        found: list[Rates] = []
        for scale in SCALES:
            probes = [_exact(model, provider, hour, i * scale, o * scale, r * scale, w * scale)
                      for i, o, r, w in ((0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (1, 0, 1, 0),
                                         (1, 0, 0, 1))]
            base = probes[0]
            if base is None or any(p is None for p in probes):
                return None if not found else (found[0], SCALES[len(found) - 1])
            rates = Rates(float(base), *(float((p - base) / scale)  # type: ignore[operator]
                                         for p in probes[1:]))
            if found and not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in
                                 zip(_fields(found[0]), _fields(rates), strict=True)):
                break
            found.append(rates)
    return found[0], SCALES[len(found) - 1]


def _fields(rates: Rates) -> tuple[float, ...]:
    return rates.base, rates.input, rates.output, rates.cache_read, rates.cache_write


def price(model: str | None, tokens_input: int, tokens_output: int, *, provider: str | None = None,
          cache_read: int = 0, cache_write: int = 0, when: datetime | None = None
          ) -> float | None:
    """Return what one call cost in USD, or None when no price is known for the model.

    Args:
        model: the model name as the call reported it (``gpt-4o-2024-08-06``,
            ``claude-sonnet-4-5``); genai-prices matches versions and aliases.
        tokens_input: input tokens, cache reads and writes included.
        tokens_output: output tokens.
        provider: ``gen_ai.provider.name`` (or a genai-prices id); the model alone otherwise.
        cache_read, cache_write: input tokens read from / written to the provider's cache.
        when: the time of the call (prices change); now if None.
    """
    if not model:
        return None
    counts = [max(int(n), 0) for n in (tokens_input, tokens_output, cache_read, cache_write)]
    if any(n > _MAX_TOKENS for n in counts):
        return None
    tokens_input, tokens_output, cache_read, cache_write = counts
    cache_read = min(cache_read, tokens_input)
    cache_write = min(cache_write, tokens_input - cache_read)
    moment = when or datetime.now(UTC)
    provider = provider_id(provider)
    # The hour's start as a datetime: a time in the last hour of 9999 whose float timestamp
    # rounds up would name an hour of the year 10000, which no datetime holds.
    hour = min(int(moment.timestamp()) // 3600, _LAST_HOUR)
    linear = _rates(model, provider, hour)
    if linear is None:
        return None
    rates, limit = linear
    if tokens_input <= limit and tokens_output <= limit:
        return round(max(rates.cost(tokens_input, tokens_output, cache_read, cache_write), 0.0), 12)
    exact = _exact(model, provider, moment, tokens_input, tokens_output, cache_read, cache_write)
    return None if exact is None else max(float(exact), 0.0)


_missed: set[str] = set()


def first_miss(model: str) -> bool:
    """Whether this is the first time this process found no price for ``model``."""
    with _lock:
        if model in _missed:
            return False
        _missed.add(model)
        return True


__all__ = ["PROVIDER_ALIASES", "Rates", "first_miss", "price", "provider_id"]
