{{/*
Names and labels shared by every template.
*/}}

{{- define "kubenas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: the release name alone when it already contains the chart name, so
`helm install kubenas charts/kubenas` gives objects named "kubenas", not "kubenas-kubenas".
*/}}
{{- define "kubenas.fullname" -}}
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

{{- define "kubenas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "kubenas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubenas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kubenas.labels" -}}
helm.sh/chart: {{ include "kubenas.chart" . }}
{{ include "kubenas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kubenas
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kubenas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubenas.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubenas.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Leader election through a Lease: asked for, or implied by more than one replica. */}}
{{- define "kubenas.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{- end }}
{{- end }}

{{- define "kubenas.leaseName" -}}
{{- default (include "kubenas.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Cluster-wide when no namespaces are listed. */}}
{{- define "kubenas.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{/*
The job label every query in the dashboard and the alert rules selects on. The ServiceMonitor and
PodMonitor set it, and docs/monitoring.md asks a hand-written scrape config to use it too.
*/}}
{{- define "kubenas.metricsJob" -}}
kubenas-operator
{{- end }}

{{/*
What the operator may do where experiments live: exactly the requests it makes (docs/operator.md,
"Permissions"), checked against operator/kubenas/operator/kube.py by tests/unit/test_chart.py and
exercised by tests/e2e/test_install_helm.py under the chart's ServiceAccount. Cluster-wide this is a
ClusterRole; with watchNamespaces the same rules go into a Role in each listed namespace. Secrets,
Services and Deployments are created and read by name only: no list or watch on them.
*/}}
{{- define "kubenas.namespacedRules" -}}
# kopf watches experiments and keeps its progress in their annotations.
- apiGroups: ["kubenas.io"]
  resources: ["searchexperiments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubenas.io"]
  resources: ["trials"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["kubenas.io"]
  resources: ["searchexperiments/status", "trials/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion, which needs update on the owner's finalizers.
- apiGroups: ["kubenas.io"]
  resources: ["searchexperiments/finalizers", "trials/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
# The experiment's controller (and a one-shot search's evaluator): Deployment (scaled to 0 when done), Service,
# token Secret.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
# A one-shot search's evaluation record (phase 2): a chain of ConfigMaps.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "create", "patch"]
# The claims trial pods mount are looked up once a pod has waited to start, so a missing one fails the
# experiment.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
# spec.queueName: the Kueue LocalQueue is looked up, so a missing one fails the experiment.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["localqueues"]
  verbs: ["get"]
{{- end }}
