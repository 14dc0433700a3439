"""Kubernetes objects for redkube, as pure data: the RedisCluster resource and the objects
the operator owns."""
