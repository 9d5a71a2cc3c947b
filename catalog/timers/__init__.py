"""TTL timers: the timer properties' rules and the catalog's record of each timer."""
