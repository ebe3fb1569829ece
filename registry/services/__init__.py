"""registry.services (docs/design.md §2)."""
