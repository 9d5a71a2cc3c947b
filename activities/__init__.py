"""The only code that touches the outside world: one module per integration family.

``build_activities(settings)`` builds every integration from settings and returns the bound
activity methods the worker registers; each step activity's name is its step kind (``uses``).
Vendor modules are imported inside it, so workflows that import ``contracts`` do not
pull in httpx, boto3 or slack-sdk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config import Settings


def build_activities(settings: Settings) -> list[Callable[..., Any]]:
    from activities.initiatives import build_initiative_activities
    from activities.sources import build_source_activities
    from activities.sub_actions import build_sub_action_activities
    from activities.vendors import build_activities as build

    return (
        build(settings)
        + build_source_activities(settings)
        + build_initiative_activities(settings)
        + build_sub_action_activities(settings)
    )
