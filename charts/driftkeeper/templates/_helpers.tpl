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

{{/* Pod security (values podSecurityContext: the image's non-root user by default). */}}
{{- define "driftkeeper.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Container security (values securityContext: read-only root, no privilege). */}}
{{- define "driftkeeper.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* "true" when the model volume can be attached to one node only (ReadWriteOnce). */}}
{{- define "driftkeeper.singleNodeVolume" -}}
{{- if and .Values.model.persistence.enabled (has "ReadWriteOnce" .Values.model.persistence.accessModes) }}true{{ end }}
{{- end }}

{{/*
The retraining Jobs' ServiceAccount ("": none named, the namespace's default). Cluster-wide,
Jobs run in every policy's namespace, where the release's account does not exist: only a
name given explicitly is used there.
*/}}
{{- define "driftkeeper.retrainServiceAccountName" -}}
{{- if .Values.operator.clusterWide }}
{{- .Values.retrainJob.serviceAccount.name }}
{{- else if .Values.retrainJob.serviceAccount.create }}
{{- default (printf "%s-retrain" (include "driftkeeper.fullname" .) | trunc 63 | trimSuffix "-") .Values.retrainJob.serviceAccount.name }}
{{- else }}
{{- .Values.retrainJob.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The retraining Jobs' image. */}}
{{- define "driftkeeper.retrainImage" -}}
{{- $repository := default .Values.image.repository .Values.retrainJob.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.retrainJob.image.tag }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/*
What the retraining Jobs run as: the operator's DRIFTKEEPER_JOB_SETTINGS (JSON, keys as in
driftkeeper_operator/jobsettings.py). Only these values decide it, never a DriftPolicy.
*/}}
{{- define "driftkeeper.jobSettings" -}}
{{- $job := .Values.retrainJob }}
{{- $settings := dict
      "image" (include "driftkeeper.retrainImage" .)
      "imagePullPolicy" .Values.image.pullPolicy
      "imagePullSecrets" .Values.imagePullSecrets
      "podSecurityContext" (default .Values.podSecurityContext $job.podSecurityContext)
      "securityContext" (default .Values.securityContext $job.securityContext)
      "resources" $job.resources
      "nodeSelector" $job.nodeSelector
      "tolerations" $job.tolerations
      "affinity" $job.affinity
      "allowedImages" $job.allowedImages }}
{{- with include "driftkeeper.retrainServiceAccountName" . }}
{{- $_ := set $settings "serviceAccountName" . }}
{{- end }}
{{- toJson $settings }}
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
# The target Deployment: a retraining Job may mount only the claim it mounts, where it
# mounts it (a policy cannot point a Job at another application's volume).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get]
# That claim's access modes: a ReadWriteOnce volume puts the Job beside a model pod.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
# An Event for everything the policy engine decides.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
