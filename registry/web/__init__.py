"""registry.web (DESIGN.md §2)."""
