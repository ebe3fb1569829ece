"""registry.web (docs/design.md §2)."""
