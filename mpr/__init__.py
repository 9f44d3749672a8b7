"""The product's own packages, kept under one name so that installing the project does not put
generic top-level modules (`domain`, `infra`, ...) into a user's site-packages; see
docs/architecture.md."""
