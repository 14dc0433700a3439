"""Frozen values: slots, nodes as Redis sees them, members as the platform sees them,
specs and actions."""
