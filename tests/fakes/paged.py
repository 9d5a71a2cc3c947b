"""What the data-source fakes share: listings served page by page, and faults on a chosen page.

``fail_page("repos", 2, 500)`` answers the second page of the ``repos`` listing with a 500
(``times`` times); ``fail_page(..., 429, headers={"Retry-After": "1"})`` rate-limits it.
``hold_page("repos", 3)`` makes that page wait until the returned event is set (a worker can
be killed while it waits). ``served`` lists each (listing, page) answered, in order.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse, Response

from tests.fakes.server import FakeVendor


@dataclass
class Fault:
    listing: str
    page: int
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class PagedVendor(FakeVendor):
    def reset(self) -> None:
        super().reset()
        self.faults: list[Fault] = []
        self.holds: dict[tuple[str, int], threading.Event] = {}
        self.served: list[tuple[str, int]] = []

    def fail_page(
        self,
        listing: str,
        page: int,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        self.faults.append(Fault(listing, page, status, times, headers or {}, body))

    def hold_page(self, listing: str, page: int) -> threading.Event:
        event = threading.Event()
        self.holds[listing, page] = event
        return event

    async def intercept(self, listing: str, page: int) -> Response | None:
        """A scripted answer for this page, or None to serve it (after any hold is released)."""
        for fault in self.faults:
            if (fault.listing, fault.page) == (listing, page) and fault.times > 0:
                fault.times -= 1
                body = fault.body if fault.body is not None else {"message": f"scripted {fault.status}"}
                return JSONResponse(body, status_code=fault.status, headers=fault.headers)
        hold = self.holds.get((listing, page))
        if hold is not None:
            await asyncio.to_thread(hold.wait, 60)
        self.served.append((listing, page))
        return None


def window(items: list[Any], page: int, size: int) -> tuple[list[Any], bool]:
    """The ``page``-th (1-based) window of ``size`` items, and whether more follow."""
    start = (page - 1) * size
    return items[start : start + size], start + size < len(items)
