"""Reusable observations for controls: each returns data; the control decides pass/fail."""
