"""Automations: event triggers that launch actions."""
