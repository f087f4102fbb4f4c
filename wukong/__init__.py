"""Wukong: transfer learning in one command."""

__version__ = "0.2.0"
