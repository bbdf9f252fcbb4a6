// Prints the prometheus-operator CRDs (ServiceMonitor, PrometheusRule, ...) that the module
// embeds in its package `example`, for the tests' API server. A module of its own, so that
// its dependencies never move the control plane's.
module driftkeeper.local/promcrds

go 1.25.0

require github.com/prometheus-operator/prometheus-operator v0.89.0
