"""Built-in normalizers plugin (see its modules)."""
