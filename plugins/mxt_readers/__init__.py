"""Built-in readers plugin (see its modules)."""
