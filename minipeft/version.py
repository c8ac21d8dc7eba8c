"""The package version, in a module of its own so that files inside the package can read it
without importing the package (and setup.cfg can read it without importing torch)."""

__version__ = "0.1.0"
