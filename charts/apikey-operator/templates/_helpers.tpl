{{/*
The chart name, or nameOverride.
*/}}
{{- define "apikey-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, or the release name when it
already contains the chart name, or <release>-<chart>. At most 63 characters.
*/}}
{{- define "apikey-operator.fullname" -}}
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

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "apikey-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels every resource carries.
*/}}
{{- define "apikey-operator.labels" -}}
helm.sh/chart: {{ include "apikey-operator.chart" . }}
{{ include "apikey-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: apikey-operator
{{- end }}

{{/*
The labels that select the operator's pods (never change them: Deployment selectors are
immutable).
*/}}
{{- define "apikey-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apikey-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "apikey-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "apikey-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest, or repository:tag (tag default: appVersion).
*/}}
{{- define "apikey-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease: its name and namespace.
*/}}
{{- define "apikey-operator.leaseName" -}}
{{- default (include "apikey-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "apikey-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.leaseNamespace }}
{{- end }}

{{/*
The metrics Service name (also the `job` label Prometheus gives its targets through the
ServiceMonitor).
*/}}
{{- define "apikey-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "apikey-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
RBAC rules for the namespaced resources the operator reconciles, reads and writes. Granted
cluster-wide (ClusterRole) by default, or per watched namespace (Role) with
watchNamespaces. The reason for every verb is in README.md ("RBAC").
*/}}
{{- define "apikey-operator.rules.namespaced" -}}
- apiGroups: ["apikey.dev"]
  resources: ["apikeys"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["apikey.dev"]
  resources: ["apikeys/status"]
  verbs: ["update"]
- apiGroups: ["apikey.dev"]
  resources: ["apikeys/finalizers"]
  verbs: ["update"]
- apiGroups: ["apikey.dev"]
  resources: ["keyissuers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apikey.dev"]
  resources: ["keystores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apikey.dev"]
  resources: ["keyissuers/status", "keystores/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "watch", "patch"]
{{- end }}

{{/*
RBAC rules for the cluster-scoped resources: always a ClusterRole.
*/}}
{{- define "apikey-operator.rules.cluster" -}}
- apiGroups: ["apikey.dev"]
  resources: ["clusterkeyissuers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apikey.dev"]
  resources: ["clusterkeystores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apikey.dev"]
  resources: ["clusterkeyissuers/status", "clusterkeystores/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}

{{/*
RBAC rules in the operator's own namespace when it watches only some namespaces and not
its own: the credentials of ClusterKeyIssuers and ClusterKeyStores live there.
*/}}
{{- define "apikey-operator.rules.ownNamespace" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}

{{/*
The binding subject: the operator's ServiceAccount.
*/}}
{{- define "apikey-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "apikey-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}
