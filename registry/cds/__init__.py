"""registry.cds (DESIGN.md §2)."""
