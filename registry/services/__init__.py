"""registry.services (DESIGN.md §2)."""
