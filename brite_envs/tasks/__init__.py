"""Built-in tasks. Each module is imported lazily by the registry."""
