"""What a device costs to rent and to power: on-demand $/GPU-hour from public price lists and a
per-phase power model, both sourced data in ``hwmodels/data/costs``.

Power follows SplitwiseSim's per-phase model (Patel et al., Splitwise, ISCA 2024, arXiv 2311.18677):
a GPU draws ``idle_w`` with nothing to do, ``prefill_w`` while it runs prompt steps and ``decode_w``
while it runs token steps; the mean power over a steady state is the time-weighted mix
``P = idle + f_prefill (prefill - idle) + f_decode (decode - idle)``, f the fraction of time in each phase.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from hwmodels.catalog import DATA_DIR, get_accelerator, list_accelerators
from hwmodels.errors import InputError, validated
from hwmodels.io import read_text_bounded, safe_load_bounded

COSTS_DIR = DATA_DIR / "costs"


class PriceQuote(BaseModel):
    """One public (or contract) on-demand price for one GPU-hour."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: str
    offer: str = ""
    usd_per_gpu_hour: PositiveFloat
    url: str = ""
    published: dt.date | None = None
    retrieved: dt.date | None = None


class PowerModel(BaseModel):
    """Per-phase power of one GPU, in watts, with where the numbers come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    idle_w: PositiveFloat
    prefill_w: PositiveFloat
    decode_w: PositiveFloat
    tdp_w: PositiveFloat
    source: str = Field(description="measured, or the measured part whose fractions of TDP were scaled")

    def mean_w(self, prefill_fraction, decode_fraction):
        """Time-weighted power over a steady state (SplitwiseSim's per-phase model)."""
        return (self.idle_w + prefill_fraction * (self.prefill_w - self.idle_w)
                + decode_fraction * (self.decode_w - self.idle_w))


def _read(path: Path, field: str):
    text = read_text_bounded(path, field=field)  # a user's price file too: regular files only, bounded
    try:
        return safe_load_bounded(text, field, repr(str(path)))
    except yaml.YAMLError as exc:
        raise InputError(field, f"cannot read {str(path)!r}: {exc.__class__.__name__}") from None


def _quotes(data, field: str) -> dict[str, list[PriceQuote]]:
    if not isinstance(data, dict) or not data:
        raise InputError(field, "expected a mapping of GPU name to prices")
    known = set(list_accelerators())
    out = {}
    for gpu, entry in data.items():
        if gpu not in known:
            raise InputError(f"{field}.{gpu}", "not a catalog accelerator")
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            entry = [{"provider": "contract", "usd_per_gpu_hour": entry}]
        if not isinstance(entry, list) or not entry:
            raise InputError(f"{field}.{gpu}", "expected a price or a list of price quotes")
        out[gpu] = [validated(PriceQuote, q, f"{field}.{gpu}[{i}]") for i, q in enumerate(entry)]
    return out


@lru_cache(maxsize=None)
def _builtin_quotes() -> dict[str, list[PriceQuote]]:
    return _quotes(_read(COSTS_DIR / "prices.yaml", "prices"), "prices")


def price_quotes(path: str | Path | None = None) -> dict[str, list[PriceQuote]]:
    """Every quote per GPU: the shipped public list, or a user's file (``--prices FILE``)."""
    if path is None:
        return _builtin_quotes()
    return _quotes(_read(Path(path), "prices"), "prices")


def cheapest_prices(path: str | Path | None = None) -> dict[str, PriceQuote]:
    """The cheapest quote per GPU."""
    return {gpu: min(qs, key=lambda q: q.usd_per_gpu_hour) for gpu, qs in price_quotes(path).items()}


@lru_cache(maxsize=None)
def _power_data() -> dict:
    return _read(COSTS_DIR / "power.yaml", "power")


def power_model(gpu: str) -> PowerModel:
    """Per-phase power of a catalog GPU: measured by SplitwiseSim, or its fractions of TDP applied to
    this GPU's datasheet TDP."""
    data = _power_data()
    acc = get_accelerator(gpu)
    if acc.name in data["measured"]:
        return PowerModel(**data["measured"][acc.name], tdp_w=acc.tdp_w, source=f"measured ({data['source']})")
    ref = data["scaled_from"].get(acc.name)
    if ref is None:
        raise InputError("hardware.gpu", f"no power model for {acc.name!r}")
    m = data["measured"][ref]
    ref_tdp = get_accelerator(ref).tdp_w
    scale = acc.tdp_w / ref_tdp
    return PowerModel(idle_w=m["idle_w"] * scale, prefill_w=m["prefill_w"] * scale, decode_w=m["decode_w"] * scale,
                      tdp_w=acc.tdp_w, source=f"{ref}'s fractions of TDP ({data['source']})")


__all__ = ["PowerModel", "PriceQuote", "cheapest_prices", "power_model", "price_quotes"]
