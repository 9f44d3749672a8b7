"""Temporal workflows. Modules here are re-imported by the sandbox: no side effects at import."""
