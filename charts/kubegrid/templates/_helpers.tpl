{{/*
Naming, labels and the few computed values the templates share.
*/}}

{{- define "kubegrid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubegrid.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "kubegrid.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "kubegrid.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kubegrid.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name and instance only, so they never change on upgrade. */}}
{{- define "kubegrid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubegrid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubegrid.labels" -}}
helm.sh/chart: {{ include "kubegrid.chart" . }}
{{ include "kubegrid.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kubegrid
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kubegrid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubegrid.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the operator serves every namespace, else empty. */}}
{{- define "kubegrid.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{- define "kubegrid.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "kubegrid.runnerImage" -}}
{{- $repository := default .Values.image.repository .Values.jobDefaults.image.repository }}
{{- if and (not .Values.jobDefaults.image.repository) (not .Values.jobDefaults.image.tag) .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.jobDefaults.image.tag | default .Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in each namespace it serves. Pods are read only
(shard outcomes come from their termination messages); Secrets are not listed
at all: shard pods read the S3 credentials through secretKeyRef themselves.
*/}}
{{- define "kubegrid.namespacedRules" -}}
{{- /* Exactly the calls the operator makes (operator/kube.py) and kopf makes
       for it: watching and annotating GridSearches, patching their status,
       creating and watching Jobs, creating and reading the spec ConfigMap,
       listing a Job's pods to read why they stopped, posting Events. */ -}}
- apiGroups: ["kubegrid.io"]
  resources: ["gridsearches"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubegrid.io"]
  resources: ["gridsearches/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
