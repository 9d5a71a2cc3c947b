"""Gantry's search attributes, defined once: the worker registers them, the API sets them on
start, the action-run workflow keeps ``GantryRunStatus`` current."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

GANTRY_ACTION = SearchAttributeKey.for_keyword("GantryAction")
GANTRY_BLUEPRINT = SearchAttributeKey.for_keyword("GantryBlueprint")
GANTRY_ENTITY = SearchAttributeKey.for_keyword("GantryEntity")
GANTRY_RUN_STATUS = SearchAttributeKey.for_keyword("GantryRunStatus")
GANTRY_REQUESTED_BY = SearchAttributeKey.for_keyword("GantryRequestedBy")
GANTRY_DATA_SOURCE = SearchAttributeKey.for_keyword("GantryDataSource")

ALL_KEYS = (
    GANTRY_ACTION,
    GANTRY_BLUEPRINT,
    GANTRY_ENTITY,
    GANTRY_RUN_STATUS,
    GANTRY_REQUESTED_BY,
    GANTRY_DATA_SOURCE,
)
NAMES = tuple(key.name for key in ALL_KEYS)
