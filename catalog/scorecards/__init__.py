"""Scorecards: levels and rules that grade entities, the grading and its history."""
