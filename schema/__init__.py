"""Schema layer: settings, MySQL migrations, MongoDB specs, Redis key catalogue, event contracts."""
