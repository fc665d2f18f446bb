{{- define "regcred.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "regcred.fullname" -}}
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

{{- define "regcred.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regcred.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "regcred.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regcred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{- define "regcred.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-manager" (include "regcred.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "regcred.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "regcred.webhookServiceName" -}}
{{- printf "%s-webhook" (include "regcred.fullname" .) }}
{{- end }}

{{- define "regcred.webhookCertSecret" -}}
{{- printf "%s-webhook-cert" (include "regcred.fullname" .) }}
{{- end }}

{{/* regcred.seconds turns a duration like 15m into seconds. */}}
{{- define "regcred.seconds" -}}
{{- $d := toString . -}}
{{- $n := trimSuffix "s" (trimSuffix "m" (trimSuffix "h" $d)) | int -}}
{{- if hasSuffix "h" $d -}}{{ mul $n 3600 }}{{- else if hasSuffix "m" $d -}}{{ mul $n 60 }}{{- else -}}{{ $n }}{{- end -}}
{{- end }}

{{/* The node agent's labels: the manager's with component node-agent, so
that the webhook Service and the manager's selectors never pick its Pods. */}}
{{- define "regcred.nodeAgentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "regcred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
{{- end }}

{{- define "regcred.nodeAgentLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regcred.nodeAgentSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* regcred.webhookServiceEnv is the prefix of the variables Kubernetes
sets for the webhook Service in Pods of its namespace
(<PREFIX>_SERVICE_HOST, <PREFIX>_SERVICE_PORT). */}}
{{- define "regcred.webhookServiceEnv" -}}
{{- include "regcred.webhookServiceName" . | upper | replace "-" "_" }}
{{- end }}

{{/* regcred.nodeCredentialsCheck fails the rendering when nodeCredentials
cannot work with the other values. */}}
{{- define "regcred.nodeCredentialsCheck" -}}
{{- if and .Values.nodeCredentials.enabled (not .Values.webhook.enabled) }}
{{- fail "nodeCredentials.enabled needs webhook.enabled: the broker runs on the webhook's HTTPS server" }}
{{- end }}
{{- end }}

{{/* regcred.kubeVersionCheck refuses clusters older than 1.30 with an
error that says what to do. Chart.yaml's kubeVersion cannot: `helm
template` without a cluster assumes Kubernetes v1.20.0 (Helm 3), and the
error Helm prints for kubeVersion does not say how to render anyway. */}}
{{- define "regcred.kubeVersionCheck" -}}
{{- $v := .Capabilities.KubeVersion.Version }}
{{- if not (semverCompare ">=1.30.0-0" $v) }}
{{- fail (printf "regcred needs Kubernetes 1.30 or newer, and this is rendered for %s. Without a cluster, Helm 3's `helm template` assumes v1.20.0: pass your cluster's version, for example `helm template regcred charts/regcred --kube-version 1.37`" $v) }}
{{- end }}
{{- end }}
