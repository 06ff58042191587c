"""Pytest fixtures for the host controls (registered by ztm.plugin)."""
