"""The hardware catalog: every shipped file loads, hand-picked datasheet values, physical sanity,
and the error paths of user-supplied accelerators."""

from __future__ import annotations

import pytest
import yaml

from hwmodels.catalog import get_accelerator, get_node, list_accelerators, list_nodes
from hwmodels.devices import Accelerator, Node
from hwmodels.errors import InputError

GiB = 2**30
MiB = 2**20

REQUIRED_ACCELERATORS = {
    "a100-40gb-sxm",
    "a100-80gb-sxm",
    "a100-80gb-pcie",
    "h100-sxm",
    "h100-pcie",
    "h100-nvl",
    "h200-sxm",
    "h20",
    "b200",
    "gb200",
    "l40s",
    "l4",
    "a10g",
    "rtx-4090",
    "mi300x",
    "mi325x",
    "gaudi3",
    "tpu-v5e",
}
REQUIRED_NODES = {"dgx-a100-80gb", "dgx-h100", "dgx-h200", "dgx-b200", "mi300x-platform"}

ALL_ACCELERATORS = sorted(list_accelerators())
ALL_NODES = sorted(list_nodes())


def test_required_names_exist():
    assert REQUIRED_ACCELERATORS <= set(ALL_ACCELERATORS)
    assert REQUIRED_NODES <= set(ALL_NODES)


@pytest.mark.parametrize("name", ALL_ACCELERATORS)
def test_accelerator_loads_and_name_matches_file(name):
    acc = get_accelerator(name)
    assert isinstance(acc, Accelerator)
    assert acc.name == name


@pytest.mark.parametrize("name", ALL_NODES)
def test_node_loads_and_its_accelerator_resolves(name):
    node = get_node(name)
    assert isinstance(node, Node)
    assert node.name == name
    assert node.accelerator in ALL_ACCELERATORS
    get_accelerator(node.accelerator)
    assert node.accelerators_per_node == (72 if name == "gb200-nvl72" else 8)


# (name, path into the model, expected) -- values read off the vendor datasheets.
DATASHEET_VALUES = [
    ("a100-40gb-sxm", ("peak", "bf16"), 312e12),
    ("a100-40gb-sxm", ("hbm_bandwidth_bytes_per_s",), 1.555e12),
    ("a100-40gb-sxm", ("hbm_capacity_bytes",), 40 * GiB),
    ("a100-80gb-sxm", ("peak", "bf16"), 312e12),
    ("a100-80gb-sxm", ("peak", "tf32"), 156e12),
    ("a100-80gb-sxm", ("peak", "fp64"), 19.5e12),
    ("a100-80gb-sxm", ("hbm_bandwidth_bytes_per_s",), 2.039e12),
    ("a100-80gb-sxm", ("hbm_capacity_bytes",), 80 * GiB),
    ("a100-80gb-sxm", ("sm_count",), 108),
    ("a100-80gb-pcie", ("hbm_bandwidth_bytes_per_s",), 1.935e12),
    ("a100-80gb-pcie", ("tdp_w",), 300),
    ("h100-sxm", ("peak", "bf16"), 989.4e12),
    ("h100-sxm", ("peak", "fp8"), 1978.9e12),
    ("h100-sxm", ("hbm_bandwidth_bytes_per_s",), 3.35e12),
    ("h100-sxm", ("hbm_capacity_bytes",), 80 * GiB),
    ("h100-sxm", ("l2_bytes",), 50 * MiB),
    ("h100-sxm", ("sm_count",), 132),
    ("h100-sxm", ("tdp_w",), 700),
    ("h100-sxm", ("intra_node_link", "bandwidth_bytes_per_s"), 450e9),
    ("h100-sxm", ("host_link", "bandwidth_bytes_per_s"), 64e9),
    ("h100-pcie", ("peak", "bf16"), 756.5e12),
    ("h100-pcie", ("sm_count",), 114),
    ("h100-nvl", ("hbm_bandwidth_bytes_per_s",), 3.9e12),
    ("h100-nvl", ("intra_node_link", "bandwidth_bytes_per_s"), 300e9),
    ("h200-sxm", ("hbm_bandwidth_bytes_per_s",), 4.8e12),
    ("h200-sxm", ("hbm_capacity_bytes",), 141 * GiB),
    ("h200-sxm", ("peak", "bf16"), 989.4e12),
    ("b200", ("peak", "bf16"), 2.25e15),
    ("b200", ("peak", "fp4"), 9e15),
    ("b200", ("intra_node_link", "bandwidth_bytes_per_s"), 900e9),
    ("gb200", ("peak", "fp4"), 10e15),
    ("gb200", ("host_link", "bandwidth_bytes_per_s"), 450e9),
    ("l40s", ("peak", "fp8"), 733e12),
    ("l40s", ("hbm_bandwidth_bytes_per_s",), 864e9),
    ("l4", ("peak", "bf16"), 121e12),
    ("l4", ("tdp_w",), 72),
    ("rtx-4090", ("peak", "bf16"), 165.2e12),
    ("rtx-4090", ("hbm_bandwidth_bytes_per_s",), 1.008e12),
    ("mi300x", ("hbm_bandwidth_bytes_per_s",), 5.3e12),
    ("mi300x", ("peak", "bf16"), 1307.4e12),
    ("mi300x", ("peak", "fp8"), 2614.9e12),
    ("mi300x", ("hbm_capacity_bytes",), 192 * GiB),
    ("mi300x", ("sm_count",), 304),
    ("mi325x", ("hbm_bandwidth_bytes_per_s",), 6.0e12),
    ("mi325x", ("hbm_capacity_bytes",), 256 * GiB),
    ("gaudi3", ("peak", "bf16"), 1835e12),
    ("gaudi3", ("intra_node_link", "bandwidth_bytes_per_s"), 525e9),
    ("tpu-v5e", ("peak", "bf16"), 197e12),
    ("tpu-v5e", ("hbm_bandwidth_bytes_per_s",), 819e9),
]


def _lookup(acc: Accelerator, path: tuple[str, ...]):
    if path[0] == "peak":
        return acc.peak_flops_per_s[path[1]]
    value = acc
    for part in path:
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("name,path,expected", DATASHEET_VALUES)
def test_datasheet_values(name, path, expected):
    assert _lookup(get_accelerator(name), path) == pytest.approx(expected, rel=1e-6)


def test_fp4_only_where_the_chip_has_it():
    with_fp4 = {n for n in ALL_ACCELERATORS if "fp4" in get_accelerator(n).peak_flops_per_s}
    assert {"b200", "gb200"} <= with_fp4
    assert not {"mi300x", "mi325x", "h100-sxm", "h200-sxm", "a100-80gb-sxm"} & with_fp4
    assert "fp8" not in get_accelerator("a100-80gb-sxm").peak_flops_per_s


@pytest.mark.parametrize("name", ALL_ACCELERATORS)
def test_peak_ordering(name):
    peak = get_accelerator(name).peak_flops_per_s
    chain = [peak[d] for d in ("fp4", "fp8", "bf16", "fp32") if d in peak]
    assert chain == sorted(chain, reverse=True), f"{name}: fp4 >= fp8 >= bf16 >= fp32 violated"
    if "fp16" in peak and "bf16" in peak:
        assert peak["fp16"] == peak["bf16"]
    if "tf32" in peak:
        assert peak["tf32"] <= peak["bf16"]
        assert peak.get("fp32", 0.0) <= peak["tf32"]


@pytest.mark.parametrize("name", ALL_ACCELERATORS)
def test_physical_sanity(name):
    acc = get_accelerator(name)
    for link in (acc.intra_node_link, acc.host_link):
        assert 0 < link.bandwidth_bytes_per_s < acc.hbm_bandwidth_bytes_per_s
        assert 0 < link.latency_s < 50e-6
    assert acc.host_link.bandwidth_bytes_per_s <= acc.intra_node_link.bandwidth_bytes_per_s
    assert 0.5e9 <= acc.boost_clock_hz <= 3e9
    assert 1 * GiB <= acc.hbm_capacity_bytes <= 512 * GiB
    assert 100e9 <= acc.hbm_bandwidth_bytes_per_s <= 20e12
    assert acc.l2_bytes < acc.hbm_capacity_bytes
    assert 50 <= acc.tdp_w <= 2000


@pytest.mark.parametrize("name", ALL_ACCELERATORS)
def test_every_accelerator_number_has_an_https_source(name):
    acc = get_accelerator(name)
    fields = [
        "peak_flops_per_s",
        "hbm_capacity_bytes",
        "hbm_bandwidth_bytes_per_s",
        "l2_bytes",
        "sm_count",
        "boost_clock_hz",
        "tdp_w",
    ]
    assert set(fields) <= set(acc.sources)
    for link in (acc.intra_node_link, acc.host_link):
        assert set(link.sources) >= {"bandwidth_bytes_per_s", "latency_s"}
    urls = list(acc.sources.values())
    urls += list(acc.intra_node_link.sources.values()) + list(acc.host_link.sources.values())
    for url in urls:
        assert url.startswith("https://"), url
        assert " " not in url


@pytest.mark.parametrize("name", ALL_NODES)
def test_every_node_number_has_an_https_source(name):
    node = get_node(name)
    assert set(node.host_memory.sources) >= {"capacity_bytes", "bandwidth_bytes_per_s"}
    assert "accelerators_per_node" in node.sources
    for url in list(node.sources.values()) + list(node.host_memory.sources.values()):
        assert url.startswith("https://"), url


def test_node_host_memory_values():
    assert get_node("dgx-h100").host_memory.capacity_bytes == 2 * 1024 * GiB
    assert get_node("dgx-h100").host_memory.bandwidth_bytes_per_s == pytest.approx(2 * 8 * 4800e6 * 8)
    assert get_node("dgx-a100-80gb").host_memory.bandwidth_bytes_per_s == pytest.approx(2 * 8 * 3200e6 * 8)
    assert get_node("mi300x-platform").accelerator == "mi300x"
    for name in ALL_NODES:
        host = get_node(name).host_memory
        acc = get_accelerator(get_node(name).accelerator)
        # host DDR is bigger than one GPU's HBM and, per GPU, slower
        per_gpu = get_node(name).accelerators_per_node if name == "gb200-nvl72" else 1
        assert host.capacity_bytes > acc.hbm_capacity_bytes
        assert host.bandwidth_bytes_per_s / per_gpu < acc.hbm_bandwidth_bytes_per_s


def test_unknown_accelerator_suggests_close_name():
    with pytest.raises(InputError) as info:
        get_accelerator("h100-sx")
    assert "h100-sxm" in str(info.value)
    assert info.value.field == "hardware.gpu"


def test_unknown_node_suggests_close_name():
    with pytest.raises(InputError) as info:
        get_node("dgx-h10")
    assert "dgx-h100" in str(info.value)


def _h100_dict() -> dict:
    data = get_accelerator("h100-sxm").model_dump()
    data["name"] = "my-gpu"
    data["display_name"] = "My GPU"
    return data


def test_custom_accelerator_from_inline_dict():
    acc = get_accelerator(_h100_dict())
    assert acc.name == "my-gpu"
    assert acc.peak_flops_per_s["bf16"] == pytest.approx(989.4e12)


def test_custom_accelerator_from_yaml_file(tmp_path):
    data = _h100_dict()
    data["hbm_bandwidth_bytes_per_s"] = 4.0e12
    path = tmp_path / "my-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    acc = get_accelerator(str(path))
    assert acc.name == "my-gpu"
    assert acc.hbm_bandwidth_bytes_per_s == pytest.approx(4.0e12)


def test_missing_yaml_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        get_accelerator(str(tmp_path / "absent.yaml"))


def test_dict_missing_a_field_names_it():
    data = _h100_dict()
    del data["hbm_bandwidth_bytes_per_s"]
    with pytest.raises(InputError) as info:
        get_accelerator(data)
    assert "hbm_bandwidth_bytes_per_s" in info.value.field
    assert "required" in info.value.message


def test_negative_bandwidth_names_the_field():
    data = _h100_dict()
    data["hbm_bandwidth_bytes_per_s"] = -1.0
    with pytest.raises(InputError) as info:
        get_accelerator(data)
    assert "hbm_bandwidth_bytes_per_s" in info.value.field


def test_negative_link_bandwidth_names_the_link_field():
    data = _h100_dict()
    data["intra_node_link"]["bandwidth_bytes_per_s"] = -450e9
    with pytest.raises(InputError) as info:
        get_accelerator(data)
    assert "intra_node_link" in info.value.field
    assert "bandwidth_bytes_per_s" in info.value.field


def test_missing_source_url_is_rejected():
    data = _h100_dict()
    del data["sources"]["tdp_w"]
    with pytest.raises(InputError, match="tdp_w"):
        get_accelerator(data)
