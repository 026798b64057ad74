"""The error every part of sdfjax raises for bad input files."""


class DataError(ValueError):
    """Bad dataset or user input; the message names the file (and line or field)."""
