"""Sessions and cells: the model-facing lifecycle, independent of any particular engine."""
