"""Development-only helpers shared by tests/ and bench/: not part of the installed product (pyproject's
packages.find leaves this package out, and no product module imports it)."""
