//go:build tools

// Package controlplane pins the programs scripts/install-control-plane builds: the blank
// imports keep them in go.mod and go.sum (this file is never compiled).
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
