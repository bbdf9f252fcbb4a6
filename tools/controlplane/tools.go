//go:build tools

// Package controlplane pins the programs scripts/install-control-plane builds: the blank
// imports keep them in go.mod and go.sum (this file is never compiled). The API server
// and etcd serve the API-level tests; the rest make the real node (scripts/local-cluster).
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
