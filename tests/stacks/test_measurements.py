"""The measurement CSV: documented columns parse; anything malformed is one line naming row and column."""

from __future__ import annotations

import pytest

from hwmodels.errors import InputError
from simulator.stacks.measurements import parse_measurements, read_bounded

HEADER = ("model,gpu,num_gpus,tp,phase,batch,prompt_len,context_len,seq_len,precision,recompute,latency_s,"
          "peak_memory_bytes\n")


def test_documented_columns_parse_and_empty_cells_mean_not_applicable():
    rows = parse_measurements(HEADER + "llama-3.2-1b,h200-sxm,1,1,prefill,2,512,,,bf16,,0.0123,\n"
                                       "llama-3.2-1b,h200-sxm,,,decode,8,,1024,,,,2.5e-3,3e9\n")
    assert [r.phase for r in rows] == ["prefill", "decode"]
    assert rows[0].length == 512 and rows[0].batch == 2 and rows[0].peak_memory_bytes is None
    assert rows[1].length == 1024 and rows[1].num_gpus == 1 and rows[1].precision == "bf16"
    assert rows[1].peak_memory_bytes == 3e9


@pytest.mark.parametrize("line, where", [
    ("llama-3.2-1b,h200-sxm,1,1,prefill,two,512,,,bf16,,0.01,", "row 1 column batch"),
    ("llama-3.2-1b,h200-sxm,1,1,prefill,2,,,,bf16,,0.01,", "row 1 column prompt_len"),
    ("llama-3.2-1b,h200-sxm,1,1,serve,2,512,,,bf16,,0.01,", "row 1 column phase"),
    ("llama-3.2-1b,h200-sxm,1,1,decode,2,,512,,bf16,,-1,", "row 1 column latency_s"),
    ("llama-3.2-1b,h200-sxm,1,1,decode,2,,512,,bf17,,0.01,", "row 1 column precision"),
    ("llama-3.2-1b,h200-sxm,1,1,decode,2,,512,,bf16,,nan,", "row 1 column latency_s"),
])
def test_a_malformed_cell_names_its_row_and_column(line, where):
    with pytest.raises(InputError) as exc:
        parse_measurements(HEADER + line + "\n")
    assert where in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_column_and_an_empty_file_are_refused():
    with pytest.raises(InputError, match="missing column 'latency_s'"):
        parse_measurements("model,gpu,phase,batch\nx,h200-sxm,decode,1\n")
    with pytest.raises(InputError, match="no data rows"):
        parse_measurements(HEADER)


def test_reading_is_bounded(tmp_path):
    big = tmp_path / "big.csv"
    big.write_text(HEADER + "x" * 5000)
    with pytest.raises(InputError, match="over the .* limit"):
        read_bounded(big, "--from-measurements", max_bytes=1000)
    with pytest.raises(InputError, match="cannot read|no such file"):
        read_bounded(tmp_path / "missing.csv", "--from-measurements")
