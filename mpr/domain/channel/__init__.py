"""A channel's life after go-live: rollback, take offline, bring back online."""
