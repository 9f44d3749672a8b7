"""Pure lifecycle rules: no I/O, no clocks, no Temporal. Everything here is deterministic."""
