"""What a device is: accelerators, links, host memory and nodes (datasheet facts with their
sources), and calibration profiles (how much of each peak real kernels reach)."""

from hwmodels.catalog import (get_accelerator, get_cluster, get_network, get_node, list_accelerators, list_networks,
                              list_nodes, nodes_with)
from hwmodels.devices import Accelerator, Cluster, HostMemory, Link, Network, Node
from hwmodels.dtypes import BYTES_PER_ELEMENT, DTYPES, bytes_per_element
from hwmodels.errors import InputError
from hwmodels.profile import Curve, KindEfficiency, Profile, builtin_profiles, load_profile

__all__ = [
    "Accelerator", "BYTES_PER_ELEMENT", "Cluster", "Curve", "DTYPES", "HostMemory", "InputError",
    "KindEfficiency", "Link", "Node", "Profile", "builtin_profiles", "bytes_per_element",
    "Network", "get_accelerator", "get_cluster", "get_network", "get_node", "list_accelerators", "list_networks",
    "list_nodes", "load_profile", "nodes_with",
]
