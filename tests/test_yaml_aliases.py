"""YAML alias expansion is bounded (issue 8): a "billion laughs" file (each level a list of nine aliases to
the level below) is refused with one line naming the file, before anything walks its 9^9 copies; files
with a few anchors and merge keys read as ``yaml.safe_load`` reads them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from hwmodels.errors import InputError
from hwmodels.io import MAX_YAML_NODES, safe_load_bounded
from simulator import Scenario


def laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_the_expanded_size_is_counted_exactly_below_the_bound():
    text = laughs(levels=4, width=9)
    data = safe_load_bounded(text, "scenario")
    assert data == yaml.safe_load(text)
    sizes = [1 + 9]  # level 0: a list node and its nine scalars; level k: a list of nine copies of level k-1
    for _ in range(3):
        sizes.append(1 + 9 * sizes[-1])
    nodes = 1 + sum(1 + size for size in sizes)  # the mapping, then each level's key and expanded value
    with pytest.raises(InputError, match=f"more than {nodes - 1:,} nodes"):
        safe_load_bounded(text, "scenario", max_nodes=nodes - 1)
    assert safe_load_bounded(text, "scenario", max_nodes=nodes) == data


def test_a_billion_laughs_scenario_is_refused_at_once(tmp_path):
    """The levels hide in a technique's parameters (free-form, so validation passes them); a flag override
    then copies the scenario, which walked all 9^9 copies before the bound (it ran out of any time limit)."""
    path = tmp_path / "laughs.yaml"
    levels = laughs().strip().splitlines()
    path.write_text("techniques:\n  - name: kv_quant\n    notes: {" + ", ".join(levels) + "}\n")
    t0 = time.monotonic()
    with pytest.raises(InputError, match="scenario: .*laughs.yaml.*aliases expand"):
        Scenario.from_file(path)
    assert time.monotonic() - t0 < 1.0  # a guard against walking the copies, not a benchmark
    run = subprocess.run([sys.executable, "-m", "roofsim", "predict", str(path), "--batch", "8"],
                         capture_output=True, text=True, timeout=60)
    err = run.stderr.strip()
    assert run.returncode == 2 and len(err.splitlines()) == 1, err
    assert str(path) in err and f"more than {MAX_YAML_NODES:,} nodes" in err


def test_a_billion_laughs_model_file_is_refused(tmp_path):
    from simulator import get_model

    path = tmp_path / "bomb.yaml"
    path.write_text(laughs() + "name: bomb\n")
    with pytest.raises(InputError, match="bomb.yaml.*aliases expand"):
        get_model(str(path))


def test_a_recursive_alias_is_refused():
    with pytest.raises(InputError, match="aliases expand"):
        safe_load_bounded("a: &a [1, *a]\n", "scenario", "'loop.yaml'")


def test_ordinary_anchors_and_merge_keys_read_as_safe_load_reads_them():
    text = ("base: &base {gpu: h100-sxm, num_gpus: 2}\n"
            "hardware: {<<: *base, num_gpus: 4}\n"
            "order: &order [tp, cp, edp, pp, dp]\n"
            "again: *order\n")
    assert safe_load_bounded(text, "scenario") == yaml.safe_load(text)
    assert safe_load_bounded("", "scenario") is None
    with pytest.raises(yaml.YAMLError):
        safe_load_bounded("a: [1, 2", "scenario")
