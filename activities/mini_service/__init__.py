"""Activities of the mini service version: its catalog."""
