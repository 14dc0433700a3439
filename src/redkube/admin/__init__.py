"""Talking to Redis nodes: observing them and executing actions on them."""
