"""Storage: SQLModel tables, repository, migrations (DESIGN.md §4)."""
