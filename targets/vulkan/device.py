"""What this machine's Vulkan device offers, read through the runtime plugin."""

from __future__ import annotations

import logging

from edgec.errors import EdgecError, ExecutionError

logger = logging.getLogger(__name__)

#: What edgec assumes with no device to ask: 256-thread workgroups (DLight's GPU rules are
#: written around them, and Adreno/Mali run them well), Vulkan's guaranteed 16 KiB of shared memory.
DEFAULT_LIMITS = {"max_threads_per_block": 256, "max_shared_memory_per_block": 16384}


def query(device_id: int = 0) -> dict:
    """Limits and features of Vulkan device ``device_id``; raises ExecutionError naming what is missing."""
    import tvm

    from edgec.targets.vulkan import plugin

    plugin.load()
    text = str(tvm.get_global_func("edgec.vulkan.device_info")(device_id))
    info = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "error" in info:
        raise ExecutionError(info["error"])
    info["features"] = [f.strip() for f in info.get("features", "").split(",") if f.strip()]
    for key in ("max_threads_per_block", "max_shared_memory_per_block", "subgroup_size", "device_count",
                "vendor_id", "device_type"):
        info[key] = int(info[key])
    return info


def try_query(device_id: int = 0) -> dict | None:
    """:func:`query`, or None when there is no loader, device or C++ toolchain (logged, not raised)."""
    try:
        return query(device_id)
    except EdgecError as err:
        logger.info("no Vulkan device to read limits from (%s); using defaults", err)
        return None
    except Exception as err:  # a plugin that fails inside the driver must not break compiles
        logger.info("reading the Vulkan device failed (%s); using defaults", err)
        return None


#: vendors whose subgroup size is fixed and equal to the reported one (NVIDIA: 32)
_FIXED_SUBGROUP_VENDORS = {0x10DE}
_CPU_DEVICE = 4  # VK_PHYSICAL_DEVICE_TYPE_CPU: lavapipe, SwiftShader


def warp_size(info: dict) -> int:
    """The warp size to schedule for: the subgroup size where it is fixed, else 1 (no warp-level steps).

    TVM's warp-synchronous reduction steps assume every warp runs in lockstep with exactly
    ``thread_warp_size`` lanes. Devices that pick the subgroup size per pipeline (Intel, AMD,
    Adreno, Mali) do not promise that without VK_EXT_subgroup_size_control, so they get 1.
    """
    if info["vendor_id"] in _FIXED_SUBGROUP_VENDORS or info["device_type"] == _CPU_DEVICE:
        return max(1, info["subgroup_size"])
    return 1


def require_device(device_id: int = 0):
    """The TVM device for running Vulkan kernels here, or an ExecutionError naming the missing piece."""
    import tvm

    query(device_id)
    return tvm.vulkan(device_id)
