"""Programmatic entry points: the client library services import, and the demo."""
