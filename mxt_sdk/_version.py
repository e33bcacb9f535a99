"""The installed package version (the package face and the saved-model folder both read it)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mxt-sdk")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
