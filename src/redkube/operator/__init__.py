"""The redkube operator: kopf handlers that run the reconcile loop for each RedisCluster."""
