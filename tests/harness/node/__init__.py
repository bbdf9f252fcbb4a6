"""A real single-node Kubernetes cluster on this machine, contained in namespaces of its own
(``scripts/local-cluster up|down``): see ``cluster.py``."""
