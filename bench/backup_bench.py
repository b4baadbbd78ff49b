"""Backup benchmark (issue 5, point 9). Placeholder: the generator is written first."""
