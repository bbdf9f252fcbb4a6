"""Kubernetes test infrastructure: an API server (KMock's emulator, or a real one given a
kubeconfig), a test "kubelet" that runs Jobs as local processes, and fixtures."""
