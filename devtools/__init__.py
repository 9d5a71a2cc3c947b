"""Stand-ins for a team's own services, so ``make run`` shows actions end to end offline."""
