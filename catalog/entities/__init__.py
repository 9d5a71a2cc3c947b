"""Entities: validated, permission-checked, audited writes of the catalog's things, and their search."""
