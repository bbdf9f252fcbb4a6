// The pod sandbox's pause process for the local node's containerd (no registry here to
// pull registry.k8s.io/pause from). A module of its own, with no dependencies.
module driftkeeper.local/pause

go 1.25.0
