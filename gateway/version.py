"""The installed version of hookgate."""

__version__ = "0.1.0"
