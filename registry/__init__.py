"""The registry server: storage and every HTTP surface (docs/design.md §2). Imports catalog, never adapters."""
