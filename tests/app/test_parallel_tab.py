"""The Scenario page's Parallelism tab: the placement (GPUs, nodes, links) and communication's share."""

from apphelpers import assert_clean, run

from app.fmt import percent
from simulator import predict


def test_tp16_over_two_nodes_shows_its_groups_and_links():
    at = run("home")
    at.selectbox(key="w.model").set_value("llama-3.1-70b")
    at.number_input(key="w.hardware.num_gpus").set_value(16).run()
    assert_clean(at)
    tables = [df.value for df in at.dataframe]
    placement = next(t for t in tables if "GPUs (first group)" in t.columns)
    row = placement[placement["group"] == "tp"].iloc[0]
    assert row["size"] == 16 and row["nodes"] == "[0, 1]" and row["link"] == "ib-ndr-400"
    comm = next(t for t in tables if "exposed communication" in t.columns)
    assert list(comm["group"]) == ["tp"]
    pred = predict({"model": "llama-3.1-70b", "hardware": {"num_gpus": 16}})
    share = percent(pred.parallelism["communication_fraction"])
    assert any(f"Communication takes {share} of the step" in c.value for c in at.caption)
