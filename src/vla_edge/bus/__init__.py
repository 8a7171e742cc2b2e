"""Transport-neutral bus: the interface, an in-memory implementation and the Greengrass IPC adapter.

The IPC adapter lives in :mod:`vla_edge.bus.ipc` and is the only module that imports awsiotsdk;
it is not imported here so that importing the bus costs nothing.
"""

from vla_edge.bus.base import Bus, ComponentUpdateEvent, Payload, Subscription

__all__ = ["Bus", "ComponentUpdateEvent", "Payload", "Subscription"]
