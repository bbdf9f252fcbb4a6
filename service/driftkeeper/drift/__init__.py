"""The drift engine: statistics, reference profiles, windows and verdicts.

No web, Kubernetes or file-system code lives here; the service, the CLI and the operator
all call into it.
"""
