"""Mode-dependent ports: each has an in-process and a Redis implementation, chosen by
configuration alone (``build_state``); domain code only sees the ports."""

from peakshop.state.ports import Broadcast, HotState, UsageCounters, build_state

__all__ = ["Broadcast", "HotState", "UsageCounters", "build_state"]
