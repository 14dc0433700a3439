"""The Kubernetes platform: a RedisCluster's Pods as the loop's members."""
