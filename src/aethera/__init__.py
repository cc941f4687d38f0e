"""AETHERA: environmental screening of planned solar and wind projects."""

__version__ = "0.1.0"
