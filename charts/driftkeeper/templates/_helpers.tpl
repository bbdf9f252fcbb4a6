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

{{/*
Where the first model's inputs (data, modelFile, modelDir) are read: /import when a
ConfigMap or another claim is mounted there, else the model volume.
*/}}
{{- define "driftkeeper.firstModelRoot" -}}
{{- $from := .Values.model.firstModel.from -}}
{{- if or $from.configMap $from.claim -}}/import{{- else -}}{{ .Values.model.modelDir }}{{- end -}}
{{- end -}}

{{/*
The init container's command line, as a JSON list: `driftkeeper import` of a model
directory, else `driftkeeper train` (on the given table, kept in the model volume for the
retrains, or on diamonds). Both do nothing when the store already serves a model.
*/}}
{{- define "driftkeeper.firstModelArgs" -}}
{{- $m := .Values.model.firstModel -}}
{{- $root := include "driftkeeper.firstModelRoot" . -}}
{{- $out := .Values.model.modelDir -}}
{{- $args := list -}}
{{- if $m.modelDir -}}
{{- $args = list "import" "--from" (printf "%s/%s" $root $m.modelDir) "--output" $out "--if-empty" -}}
{{- if $m.data -}}
{{- $args = concat $args (list "--data" (printf "%s/%s" $root $m.data)) -}}
{{- end -}}
{{- else -}}
{{- $args = list "train" "--output" $out "--if-empty" -}}
{{- if $m.data -}}
{{- $args = concat $args (list "--data" (printf "%s/%s" $root $m.data) "--keep-data") -}}
{{- end -}}
{{- with $m.target }}{{ $args = concat $args (list "--target" .) }}{{ end -}}
{{- with $m.task }}{{ $args = concat $args (list "--task" .) }}{{ end -}}
{{- with $m.categorical }}{{ $args = concat $args (list "--categorical") . }}{{ end -}}
{{- with $m.drop }}{{ $args = concat $args (list "--drop") . }}{{ end -}}
{{- with $m.model }}{{ $args = concat $args (list "--model" .) }}{{ end -}}
{{- with $m.estimator }}{{ $args = concat $args (list "--estimator" .) }}{{ end -}}
{{- with $m.modelFile }}{{ $args = concat $args (list "--model-file" (printf "%s/%s" $root .)) }}{{ end -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}

{{/*
model.firstModel's rules across fields, each failing with a message naming the field.
*/}}
{{- define "driftkeeper.validateFirstModel" -}}
{{- $m := .Values.model.firstModel -}}
{{- if and $m.from.configMap $m.from.claim -}}
{{- fail "model.firstModel.from: configMap and claim exclude each other (one source is mounted at /import)" -}}
{{- end -}}
{{- range $key := list "data" "modelFile" "modelDir" -}}
{{- $path := index $m $key -}}
{{- if regexMatch "(^|/)\\.\\.(/|$)" $path -}}
{{- fail (printf "model.firstModel.%s: %q goes through '..'; give a path inside the source" $key $path) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "target" "task" "categorical" "drop" "modelFile" -}}
{{- if and (index $m $key) (not $m.data) -}}
{{- fail (printf "model.firstModel.%s needs model.firstModel.data (the table it describes or is evaluated on)" $key) -}}
{{- end -}}
{{- end -}}
{{- $sources := list -}}
{{- range $key := list "model" "estimator" "modelFile" -}}
{{- if index $m $key }}{{ $sources = append $sources $key }}{{ end -}}
{{- end -}}
{{- if gt (len $sources) 1 -}}
{{- fail (printf "model.firstModel: %s exclude each other (one estimator, or one fitted model)" (join " and " $sources)) -}}
{{- end -}}
{{- if $m.modelDir -}}
{{- range $key := list "target" "task" "categorical" "drop" "model" "estimator" "modelFile" -}}
{{- if index $m $key -}}
{{- fail (printf "model.firstModel.%s cannot be combined with modelDir: an imported model directory brings its own schema and estimator" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
