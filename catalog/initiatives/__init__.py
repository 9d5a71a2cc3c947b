"""Initiatives: scorecard targets by a deadline, their progress and final report."""
