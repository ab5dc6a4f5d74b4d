"""Models: one module per model family; `registry.resolve_model` turns a name or path into a Model."""
