"""Storage: SQLModel tables, repository, migrations (docs/design.md §4)."""
