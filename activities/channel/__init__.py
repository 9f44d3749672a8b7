"""The channel workflow's activities."""
