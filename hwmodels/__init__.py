"""What a device is: accelerators, links, host memory and nodes (datasheet facts with their
sources), and calibration profiles (how much of each peak real kernels reach)."""

from hwmodels.catalog import get_accelerator, get_node, list_accelerators, list_nodes
from hwmodels.devices import Accelerator, Cluster, HostMemory, Link, Node
from hwmodels.dtypes import BYTES_PER_ELEMENT, DTYPES, bytes_per_element
from hwmodels.errors import InputError
from hwmodels.profile import Curve, KindEfficiency, Profile, builtin_profiles, load_profile

__all__ = [
    "Accelerator", "BYTES_PER_ELEMENT", "Cluster", "Curve", "DTYPES", "HostMemory", "InputError",
    "KindEfficiency", "Link", "Node", "Profile", "builtin_profiles", "bytes_per_element",
    "get_accelerator", "get_node", "list_accelerators", "list_nodes", "load_profile",
]
