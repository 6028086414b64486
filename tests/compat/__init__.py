"""Compatibility tests against the real vision-agents (see conftest.py)."""
