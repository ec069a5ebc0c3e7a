"""Faust stream agents that turn events into derived data."""
