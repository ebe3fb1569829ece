"""Hospital-side adapters (docs/design.md §2): HL7 v2, DICOM and the push client. Import catalog, never registry."""
