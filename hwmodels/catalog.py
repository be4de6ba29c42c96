"""Load accelerators and nodes from the data files shipped in ``hwmodels/data``, or from a user's
own file or dict. Names are lower-case with dashes (``h100-sxm``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from hwmodels.devices import Accelerator, Cluster, Network, Node
from hwmodels.errors import InputError, unknown_name, validated
from hwmodels.io import read_text_bounded, safe_load_bounded

DATA_DIR = Path(__file__).parent / "data"


def _read_yaml(path: Path, field: str) -> dict[str, Any]:
    text = read_text_bounded(path, field=field)
    try:
        data = safe_load_bounded(text, field, str(path))
    except yaml.YAMLError as exc:
        raise InputError(field, f"cannot read {path}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise InputError(field, f"{path} does not hold a mapping")
    return data


@lru_cache(maxsize=None)
def _accelerator_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted((DATA_DIR / "accelerators").glob("*.yaml"))}


@lru_cache(maxsize=None)
def _node_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted((DATA_DIR / "nodes").glob("*.yaml"))}


@lru_cache(maxsize=None)
def _network_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted((DATA_DIR / "networks").glob("*.yaml"))}


def list_networks() -> list[str]:
    """Names of the built-in scale-out networks."""
    return list(_network_files())


def list_accelerators() -> list[str]:
    """Names of the built-in accelerators."""
    return list(_accelerator_files())


def list_nodes() -> list[str]:
    """Names of the built-in nodes."""
    return list(_node_files())


def accelerator_from_dict(data: dict[str, Any], field: str = "hardware.gpu") -> Accelerator:
    """Validate a user's accelerator description (same schema as the catalog files)."""
    return validated(Accelerator, data, field)


@lru_cache(maxsize=None)
def _builtin_accelerator(name: str) -> Accelerator:
    path = _accelerator_files()[name]
    return accelerator_from_dict(_read_yaml(path, "hardware.gpu"), f"hardware.gpu[{name}]")


def get_accelerator(spec: str | dict[str, Any] | Accelerator, field: str = "hardware.gpu") -> Accelerator:
    """An accelerator from a catalog name, a YAML/JSON file path, an inline dict, or an instance."""
    if isinstance(spec, Accelerator):
        return spec
    if isinstance(spec, dict):
        return accelerator_from_dict(spec, field)
    if not isinstance(spec, str) or not spec:
        raise InputError(field, "expected a GPU name, a file path or a mapping")
    if spec in _accelerator_files():
        return _builtin_accelerator(spec)
    path = Path(spec)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.exists():
            raise InputError(field, f"no such file {spec!r}")
        return accelerator_from_dict(_read_yaml(path, field), field)
    raise unknown_name(field, spec, _accelerator_files())


@lru_cache(maxsize=None)
def get_node(name: str, field: str = "hardware.node") -> Node:
    """A built-in node by name."""
    if name not in _node_files():
        raise unknown_name(field, name, _node_files())
    return validated(Node, _read_yaml(_node_files()[name], field), field)


@lru_cache(maxsize=None)
def get_network(name: str, field: str = "hardware.network") -> Network:
    """A built-in scale-out network by name."""
    if name not in _network_files():
        raise unknown_name(field, name, _network_files())
    return validated(Network, _read_yaml(_network_files()[name], field), field)


def nodes_with(accelerator: str) -> list[str]:
    """Built-in nodes built from ``accelerator``."""
    return [n for n in _node_files() if get_node(n).accelerator == accelerator]


def get_cluster(node: Node, num_gpus: int, network: str | None = None, accelerator: Accelerator | None = None,
                field: str = "hardware.num_gpus") -> Cluster:
    """Enough ``node``s for ``num_gpus`` GPUs (a partly used last node counts whole), joined by ``network``
    (default: the node's own, else InfiniBand NDR)."""
    per = node.accelerators_per_node
    nodes = -(-int(num_gpus) // per)
    net = get_network(network or node.network or "ib-ndr-400",
                      "hardware.network" if network else "hardware.node")
    intra = node.scale_up_link or (accelerator.intra_node_link if accelerator else None)
    return Cluster(node=node, num_nodes=max(nodes, 1), inter_node_link=net.link(), intra_node_link=intra,
                   network=net)
