"""registry.api (DESIGN.md §2)."""
