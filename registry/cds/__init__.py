"""registry.cds (docs/design.md §2)."""
