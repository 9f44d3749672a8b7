"""Process plumbing: configuration, logging, Temporal connection, the embedded stack."""
