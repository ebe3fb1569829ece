"""The registry server: storage and every HTTP surface (DESIGN.md §2). Imports catalog, never adapters."""
