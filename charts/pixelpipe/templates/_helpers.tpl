{{/*
The chart's name, or nameOverride.
*/}}
{{- define "pixelpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
"<release>-<name>", or just the release when it already contains the name, or
fullnameOverride. Kept short enough that "-operator-leader" still fits in 63.
*/}}
{{- define "pixelpipe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The operator's namespaced objects: Deployment, ServiceAccount, PDB, Lease.
*/}}
{{- define "pixelpipe.operator.fullname" -}}
{{- printf "%s-operator" (include "pixelpipe.fullname" .) }}
{{- end }}

{{/*
Cluster-scoped objects carry the namespace too: release names are unique only
within a namespace, and a release named "pixelpipe" must not take over the
ClusterRole of `kubectl apply -k manifests/` ("pixelpipe-operator").
*/}}
{{- define "pixelpipe.operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "pixelpipe.operator.fullname" .) }}
{{- end }}

{{- define "pixelpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pixelpipe.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pixelpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
What selects the operator's pods: the name manifests/ uses, and the release,
so that two releases never select each other's pods.
*/}}
{{- define "pixelpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pixelpipe.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pixelpipe.labels" -}}
helm.sh/chart: {{ include "pixelpipe.chart" . }}
{{ include "pixelpipe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: pixelpipe
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
