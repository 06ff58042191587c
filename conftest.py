"""Root conftest. The control fixtures come from the installed plugins (ztm.plugin,
evidence.plugin); pytester serves the plugin's own tests under tests/unit."""

pytest_plugins = ["pytester"]
