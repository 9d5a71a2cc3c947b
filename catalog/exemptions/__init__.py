"""Scorecard exemptions: an entity excused from one rule until a date, after an approval."""
