"""Root conftest: the project's pytest plugins (also installed as pytest11 entry points)."""
