"""Pytest fixtures for the data controls (registered by ztm.plugin)."""
