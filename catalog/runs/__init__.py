"""Self-service actions and their runs: definitions, approvals, secret inputs and run state."""
