"""registry.api (docs/design.md §2)."""
