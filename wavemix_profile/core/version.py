"""The tool's version: one definition, which the package and every result record read."""
__version__ = "0.1.0"
