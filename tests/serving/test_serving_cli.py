"""``roofsim serve``: the JSON contract, the report, the progress bar, records, one-line errors."""

import csv
import json

import pytest

from roofsim.cli.main import main
from simulator import serve
from simulator.serving.result import CONTRACT

ARGS = ["serve", "--gpu", "h100-sxm", "--rate", "4", "--num-requests", "60", "--prompt-len", "uniform:200,900",
        "--output-len", "50", "--seed", "3"]


def test_json_contract_keys_in_order_and_equal_to_the_api(capsys):
    assert main([*ARGS, "--json", "--slo-ttft", "0.2", "--slo-tpot", "0.02"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert list(data)[:len(CONTRACT)] == list(CONTRACT)
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s", "queue_s", "kv_transfer_s"):
        assert set(data[key]) == {"mean", "p50", "p90", "p99"}
    api = serve({"hardware": {"gpu": "h100-sxm"}},
                {"rate": 4, "num_requests": 60, "prompt_len": "uniform:200,900", "output_len": "50", "seed": 3},
                {"slo_ttft_s": 0.2, "slo_tpot_s": 0.02})
    assert data == json.loads(json.dumps(api.contract()))
    assert err == ""  # no progress bar with --json


def test_report_and_progress_bar(capsys, tmp_path):
    path = tmp_path / "records.csv"
    assert main([*ARGS, "--records", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "60 completed, 0 rejected" in out and "TTFT" in out and "TPOT" in out
    assert "100%" in err
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 60 and float(rows[0]["first_token_s"]) >= float(rows[0]["arrival_s"])
    assert main([*ARGS, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_disaggregate_and_prefix_flags(capsys):
    assert main(["serve", "--gpu", "h100-sxm", "--num-gpus", "2", "--tp", "1", "--rate", "1", "--num-requests", "20",
                 "--prompt-len", "2048", "--output-len", "16", "--disaggregate", "1:1", "--prefix", "1024:1.0",
                 "--prefix-cache", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kv_transfer_s"]["mean"] > 0
    assert data["cached_prompt_tokens"] == 19 * 1024
    assert [r["group"] for r in data["replicas"]] == ["prefill", "decode"]


@pytest.mark.parametrize("extra, field", [
    (["--arrival", "gamma:x"], "workload.arrival"),
    (["--output-len", "lognormal:abc"], "workload.output_len"),
    (["--disaggregate", "1-1"], "serve.disaggregate"),
    (["--max-batch", "64", "--max-batched-tokens", "32"], "serve"),
    (["--prefix", "long"], "--prefix"),
    (["--cascade", "llama-3.2-1b"], "--cascade"),
])
def test_bad_flags_are_one_line_with_exit_2(capsys, extra, field):
    assert main([*ARGS, "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"roofsim: error: {field}")
    assert "\n" not in err
