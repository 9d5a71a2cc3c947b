"""Blueprints: the catalog's schemas, their property types and relations."""
