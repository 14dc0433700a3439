"""redkube: Redis Cluster run the way the textbook describes it, locally or on Kubernetes."""

__version__ = "0.1.0"
