"""Computed properties: mirror and aggregation properties derived from related entities."""
