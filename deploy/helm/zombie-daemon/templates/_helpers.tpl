{{/* The chart name, cut to the 63 characters a label value allows. */}}
{{- define "zombie-daemon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, or release-chart when they differ. */}}
{{- define "zombie-daemon.fullname" -}}
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

{{- define "zombie-daemon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zombie-daemon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zombie-daemon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "zombie-daemon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: zombie-daemon
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "zombie-daemon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zombie-daemon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zombie-daemon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
remediation.mode, checked here too because values.schema.json can be skipped
(--skip-schema-validation) and an unquoted `on` arrives as the boolean true.
*/}}
{{- define "zombie-daemon.remediationMode" -}}
{{- $mode := .Values.remediation.mode }}
{{- if not (kindIs "string" $mode) }}
{{- fail (printf "remediation.mode must be the string \"off\", \"dry-run\" or \"on\", got %v (%s): quote it in YAML" $mode (kindOf $mode)) }}
{{- end }}
{{- if not (has $mode (list "off" "dry-run" "on")) }}
{{- fail (printf "remediation.mode must be \"off\", \"dry-run\" or \"on\", got %q" $mode) }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* Directory of the CRI socket on the node, and where the pod sees it. */}}
{{- define "zombie-daemon.runtimeSocketDir" -}}
{{- dir .Values.runtimeSocket }}
{{- end }}
{{- define "zombie-daemon.runtimeSocketMountDir" -}}
{{- printf "/host%s" (dir .Values.runtimeSocket) }}
{{- end }}

{{/* A chart file that must be present when the feature using it is on. */}}
{{- define "zombie-daemon.requiredFile" -}}
{{- $content := .root.Files.Get .path }}
{{- if not $content }}
{{- fail (printf "%s is missing from the chart: copy it from %s (see deploy/README.md)" .path .source) }}
{{- end }}
{{- $content }}
{{- end }}
