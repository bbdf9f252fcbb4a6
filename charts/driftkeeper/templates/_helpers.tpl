{{/* The chart's name, 63 characters at most. */}}
{{- define "driftkeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the release name, with the chart's name appended unless it is in
it already; 63 characters at most (a DNS label).
*/}}
{{- define "driftkeeper.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart: name-version, as the helm.sh/chart label. */}}
{{- define "driftkeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "driftkeeper.labels" -}}
helm.sh/chart: {{ include "driftkeeper.chart" . }}
{{ include "driftkeeper.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels: only name and instance, which never change. */}}
{{- define "driftkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-component names. */}}
{{- define "driftkeeper.operatorName" -}}
{{- printf "%s-operator" (include "driftkeeper.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "driftkeeper.simulatorName" -}}
{{- printf "%s-simulator" (include "driftkeeper.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "driftkeeper.claimName" -}}
{{- default (printf "%s-models" (include "driftkeeper.fullname" .)) .Values.model.persistence.existingClaim }}
{{- end }}
{{- define "driftkeeper.policyName" -}}
{{- default (include "driftkeeper.fullname" .) .Values.policy.name }}
{{- end }}
{{/* The ConfigMap the operator writes for the policy (driftkeeper_operator.builders). */}}
{{- define "driftkeeper.policyConfigMap" -}}
{{- printf "driftpolicy-%s" (include "driftkeeper.policyName" .) }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "driftkeeper.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "driftkeeper.operatorName" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, tag defaulting to the chart's appVersion. */}}
{{- define "driftkeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Pod security: the image's numeric non-root user, the runtime's default seccomp. */}}
{{- define "driftkeeper.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security: read-only root filesystem, no privilege, no capabilities. */}}
{{- define "driftkeeper.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The operator's permissions (a Role, or a ClusterRole with rbac.clusterWide). */}}
{{- define "driftkeeper.operatorRules" -}}
# Kopf lists and watches DriftPolicies, and patches its annotations and finalizer on them.
- apiGroups: [driftkeeper.io]
  resources: [driftpolicies]
  verbs: [list, watch, patch]
# Phase, scores, conditions and the engine's memory, through the status subresource.
- apiGroups: [driftkeeper.io]
  resources: [driftpolicies/status]
  verbs: [patch]
# The policy ConfigMap the model pods mount: read, created, updated, deleted with the policy.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch, delete]
# Retraining Jobs: created, followed, found again after a restart, deleted with the policy.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, create, delete]
# A finished Job's pod holds the retrain's outcome in its termination message.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# The model Service's ready replicas, whose counters are summed.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list]
# An Event for everything the policy engine decides.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
