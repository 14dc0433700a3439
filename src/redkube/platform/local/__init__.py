"""The embedded default: each node a real server process with StatefulSet semantics."""
