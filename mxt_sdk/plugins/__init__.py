"""Plugins: the hook specifications, the component base classes, and the manager that loads plugins and looks components up."""
