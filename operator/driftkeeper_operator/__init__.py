"""The Kubernetes operator: DriftPolicy resources in, thresholds, status, events and
retraining Jobs out. Built on Kopf and the kubernetes client; the decisions come from
``driftkeeper.policy.engine``, the same pure engine the local driver runs."""
