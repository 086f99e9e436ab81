{{/* Chart name. */}}
{{- define "fastapi-app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, truncated to the 63 characters DNS names allow. */}}
{{- define "fastapi-app.fullname" -}}
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

{{- define "fastapi-app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "fastapi-app.labels" -}}
helm.sh/chart: {{ include "fastapi-app.chart" . }}
{{ include "fastapi-app.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fastapi-app
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels (immutable on a Deployment: keep them stable). */}}
{{- define "fastapi-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fastapi-app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fastapi-app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fastapi-app.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "fastapi-app.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if eq (toString $tag) "latest" }}
{{- fail "image.tag must not be \"latest\": pin a version or set image.digest" }}
{{- end }}
{{- printf "%s:%s" $repo (toString $tag) }}
{{- end }}
{{- end }}

{{/*
Convert a CPU quantity ("1", 2, "1500m", "0.5") to whole CPUs, rounded up.
Empty when no CPU limit is set.
*/}}
{{- define "fastapi-app.cpuLimitCeil" -}}
{{- $cpu := "" }}
{{- with .Values.resources }}{{ with .limits }}{{ with .cpu }}{{ $cpu = toString . }}{{ end }}{{ end }}{{ end }}
{{- if $cpu }}
{{- if hasSuffix "m" $cpu }}
{{- $milli := trimSuffix "m" $cpu | float64 }}
{{- divf $milli 1000 | ceil | int | max 1 }}
{{- else }}
{{- $cpu | float64 | ceil | int | max 1 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Worker count: config.workers, else ceil(CPU limit), else empty (the service reads its cgroup quota). */}}
{{- define "fastapi-app.workers" -}}
{{- if not (kindIs "invalid" .Values.config.workers) }}
{{- .Values.config.workers | int }}
{{- else }}
{{- include "fastapi-app.cpuLimitCeil" . }}
{{- end }}
{{- end }}

{{/* Minimum and default terminationGracePeriodSeconds, derived from the drain settings. */}}
{{- define "fastapi-app.drainSeconds" -}}
{{- addf .Values.config.shutdownDelaySeconds .Values.config.gracefulTimeoutSeconds | ceil | int }}
{{- end }}

{{- define "fastapi-app.terminationGracePeriodSeconds" -}}
{{- $drain := include "fastapi-app.drainSeconds" . | int }}
{{- $min := add $drain 5 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain 10 }}
{{- else }}
{{- $tgp := .Values.terminationGracePeriodSeconds | int }}
{{- if lt $tgp $min }}
{{- fail (printf "terminationGracePeriodSeconds=%d is too small: it must be at least config.shutdownDelaySeconds + config.gracefulTimeoutSeconds + 5 = %d (leave it null to derive %d)" $tgp $min (add $drain 10)) }}
{{- end }}
{{- $tgp }}
{{- end }}
{{- end }}

{{/* Image of the helm test Pod. */}}
{{- define "fastapi-app.testImage" -}}
{{- default (include "fastapi-app.image" .) .Values.tests.image }}
{{- end }}

{{/* OTEL_RESOURCE_ATTRIBUTES: downward-API attributes (expanded by the kubelet) plus otel.resourceAttributes. */}}
{{- define "fastapi-app.otelResourceAttributes" -}}
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE)" "k8s.node.name=$(K8S_NODE_NAME)" (printf "k8s.deployment.name=%s" (include "fastapi-app.fullname" .)) (printf "service.version=%s" (default .Chart.AppVersion .Values.image.tag)) }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $k $v) }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/* Labels of the helm test Pod: distinct name so the Service never selects it. */}}
{{- define "fastapi-app.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "fastapi-app.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}

{{/* Pull policy: explicit value, else Always for a (mutable) tag and IfNotPresent for a digest. */}}
{{- define "fastapi-app.pullPolicy" -}}
{{- if .Values.image.pullPolicy }}
{{- .Values.image.pullPolicy }}
{{- else if .Values.image.digest }}
{{- "IfNotPresent" }}
{{- else }}
{{- "Always" }}
{{- end }}
{{- end }}
