"""The package's version: one place, read by pyproject.toml and `sdfjax.__version__`."""

__version__ = "0.2.0"
