"""LeRobot policies for vla-edge: loading a pretrained directory, running it, the demo policy.

Importing this package does not import torch or lerobot; the functions do, when called.
"""

from vla_edge.policies.demo import (
    DEMO_NAME,
    DEMO_VERSION,
    demo_policy_dir,
    ensure_demo_policy,
    is_demo_policy,
)
from vla_edge.policies.loading import (
    LoadedPolicy,
    check_policy_dir,
    load_policy,
    resolve_device,
    set_torch_threads,
)
from vla_edge.policies.speed import DTYPES, resolve_dtype

__all__ = [
    "DEMO_NAME",
    "DEMO_VERSION",
    "DTYPES",
    "LoadedPolicy",
    "check_policy_dir",
    "demo_policy_dir",
    "ensure_demo_policy",
    "is_demo_policy",
    "load_policy",
    "resolve_device",
    "resolve_dtype",
    "set_torch_threads",
]
