"""The ``redkube`` command line."""
