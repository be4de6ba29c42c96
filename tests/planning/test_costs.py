"""Price and power data: sourced, loadable, overridable."""

from __future__ import annotations

import pytest

from hwmodels import get_accelerator
from hwmodels.costs import cheapest_prices, power_model, price_quotes
from hwmodels.errors import InputError


def test_every_quote_names_its_source_and_date():
    for gpu, quotes in price_quotes().items():
        get_accelerator(gpu)  # a catalog accelerator
        for q in quotes:
            assert q.url.startswith("https://"), (gpu, q)
            assert q.retrieved is not None and q.provider


def test_several_clouds_and_the_cheapest_by_default():
    quotes = price_quotes()
    assert len({q.provider for qs in quotes.values() for q in qs}) >= 4
    assert len(quotes["h100-sxm"]) >= 3
    assert cheapest_prices()["h100-sxm"].usd_per_gpu_hour == min(q.usd_per_gpu_hour for q in quotes["h100-sxm"])


def test_contract_prices_file(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("h100-sxm: 1.25\nl4: [{provider: acme, usd_per_gpu_hour: 0.3}]\n")
    prices = cheapest_prices(path)
    assert prices["h100-sxm"].usd_per_gpu_hour == 1.25 and prices["l4"].provider == "acme"
    path.write_text("h100-sxm: -1\n")
    with pytest.raises(InputError, match="prices.h100-sxm"):
        cheapest_prices(path)
    path.write_text("warp-drive: 1\n")
    with pytest.raises(InputError, match="not a catalog accelerator"):
        cheapest_prices(path)


def test_power_model_is_splitwise_measured_or_scaled_by_tdp():
    h100 = power_model("h100-sxm")
    assert (h100.idle_w, h100.prefill_w, h100.decode_w) == (75, 700, 380)  # SplitwiseSim's H100
    l4 = power_model("l4")  # A100's fractions of TDP applied to the L4's 72 W: 63/400 x 72, 250/400 x 72
    assert l4.idle_w == pytest.approx(63 / 400 * 72) and l4.decode_w == pytest.approx(250 / 400 * 72)
    assert l4.prefill_w == pytest.approx(72.0)
    # time-weighted: 30% prefill, 60% decode, 10% idle on an H100 = 75 + 0.3 x 625 + 0.6 x 305
    assert h100.mean_w(0.3, 0.6) == pytest.approx(75 + 0.3 * 625 + 0.6 * 305)
