"""Idempotent, version-guarded writers into MongoDB and Redis, and the cache-first reader."""
