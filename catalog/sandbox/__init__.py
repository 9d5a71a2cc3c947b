"""Untrusted programs under budgets: jq expressions and Jinja2 templates."""
