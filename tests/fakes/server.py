"""The fake-vendor base and server, shared with ``make run``'s stand-ins (devtools/standins)."""

from devtools.standins.server import FakeVendor, Recorded, serve

__all__ = ["FakeVendor", "Recorded", "serve"]
