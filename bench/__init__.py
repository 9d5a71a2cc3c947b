"""Benchmarks: how far the catalog's layers are from the raw database and a bare HTTP stack."""
