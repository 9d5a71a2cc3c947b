"""Data sources: definitions, mappings, syncs, and the converters of foreign catalog formats."""
