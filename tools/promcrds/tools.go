//go:build tools

// The prometheus-operator and its config reloader, for the real node's monitoring
// (scripts/install-control-plane builds them): pinned here, with the CRDs main.go prints,
// so that the operator always matches its CRDs. This file is never compiled.
package main

import (
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
	_ "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
)
