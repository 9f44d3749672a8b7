"""Temporal activities: the real work (builds, compatibility cells, catalog writes)."""
