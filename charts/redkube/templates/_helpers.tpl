{{/* The chart name, or nameOverride. */}}
{{- define "redkube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the objects: fullnameOverride, else the release name when it contains the
chart name, else "<release>-<chart name>"; at most 63 characters (a DNS label).
*/}}
{{- define "redkube.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "redkube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the operator's Pods; never change them after an install. */}}
{{- define "redkube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redkube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The labels on every object. */}}
{{- define "redkube.labels" -}}
helm.sh/chart: {{ include "redkube.chart" . }}
{{ include "redkube.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: redkube
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "redkube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "redkube.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's command line: `python -m redkube.operator` and its flags. */}}
{{- define "redkube.args" -}}
- python
- -m
- redkube.operator
- {{ printf "--health-port=%v" .Values.healthPort | quote }}
{{- if .Values.metricsPort }}
- {{ printf "--metrics-port=%v" .Values.metricsPort | quote }}
{{- end }}
{{- range .Values.watchNamespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- with .Values.leaderElection }}
{{- if .enabled }}
- {{ printf "--leader-election-namespace=%s" $.Release.Namespace | quote }}
- {{ printf "--lease-duration=%v" .leaseDuration | quote }}
- {{ printf "--renew-deadline=%v" .renewDeadline | quote }}
- {{ printf "--retry-period=%v" .retryPeriod | quote }}
{{- else }}
- --no-leader-election
{{- end }}
{{- end }}
{{- end }}

{{/* Refuse values the operator would refuse at start (it would crash-loop instead). */}}
{{- define "redkube.validate" -}}
{{- $le := .Values.leaderElection }}
{{- if and (not $le.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "leaderElection.enabled=false needs replicaCount 0 or 1: two operators without a Lease would both act" }}
{{- end }}
{{- if $le.enabled }}
{{- if not (lt (float64 $le.renewDeadline) (float64 $le.leaseDuration)) }}
{{- fail (printf "leaderElection.renewDeadline (%v) must be shorter than leaderElection.leaseDuration (%v)" $le.renewDeadline $le.leaseDuration) }}
{{- end }}
{{- if not (lt (float64 $le.retryPeriod) (float64 $le.renewDeadline)) }}
{{- fail (printf "leaderElection.retryPeriod (%v) must be shorter than leaderElection.renewDeadline (%v)" $le.retryPeriod $le.renewDeadline) }}
{{- end }}
{{- end }}
{{- end }}
