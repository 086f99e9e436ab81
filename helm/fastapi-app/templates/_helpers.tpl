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

{{/* Namespace of every namespaced object. */}}
{{- define "fastapi-app.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* The job label of the service's series (ServiceMonitor, rules, dashboard). */}}
{{- define "fastapi-app.job" -}}
{{- default (include "fastapi-app.fullname" .) .Values.serviceMonitor.job }}
{{- end }}

{{/* The metrics port gets a ClusterIP Service of its own when the main one is published. */}}
{{- define "fastapi-app.metricsServiceName" -}}
{{- if eq .Values.service.type "ClusterIP" }}
{{- include "fastapi-app.fullname" . }}
{{- else }}
{{- printf "%s-metrics" (include "fastapi-app.fullname" .) }}
{{- end }}
{{- end }}

{{- define "fastapi-app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "fastapi-app.labels" -}}
{{ include "fastapi-app.chartLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels the chart itself sets (commonLabels and podLabels must not repeat them). */}}
{{- define "fastapi-app.chartLabels" -}}
helm.sh/chart: {{ include "fastapi-app.chart" . }}
{{ include "fastapi-app.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ default (include "fastapi-app.name" .) .Values.partOf | quote }}
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
Convert a CPU quantity ("1", 2, "1500m", "0.5") to whole CPUs, rounded up, at least 1:
the CPU limit, else the CPU request (many platforms forbid CPU limits; without a limit there
is no cgroup quota and the service would fall back to every CPU of the node).
Empty when neither is set.
*/}}
{{- define "fastapi-app.cpuCeil" -}}
{{- $cpu := "" }}
{{- with .Values.resources }}{{ with .requests }}{{ with .cpu }}{{ $cpu = toString . }}{{ end }}{{ end }}{{ end }}
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

{{/* Worker count: config.workers, else ceil(CPU limit), else ceil(CPU request), else empty (the service reads its cgroup quota). */}}
{{- define "fastapi-app.workers" -}}
{{- if not (kindIs "invalid" .Values.config.workers) }}
{{- .Values.config.workers | int }}
{{- else }}
{{- include "fastapi-app.cpuCeil" . }}
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

{{/* Pull policy: the explicit value, else IfNotPresent. */}}
{{- define "fastapi-app.pullPolicy" -}}
{{- default "IfNotPresent" .Values.image.pullPolicy }}
{{- end }}

{{/*
A container of initContainers/sidecars: tpl-rendered when given as a string, and under the
chart's restricted securityContext unless it overrides keys of it.
*/}}
{{- define "fastapi-app.extraContainer" -}}
{{- $root := index . 0 }}
{{- $c := index . 1 }}
{{- if kindIs "string" $c }}
{{- $c = tpl $c $root | fromYaml }}
{{- else }}
{{- $c = tpl (toYaml $c) $root | fromYaml }}
{{- end }}
{{- $sc := mergeOverwrite (deepCopy $root.Values.securityContext) (default dict $c.securityContext) }}
{{- $_ := set $c "securityContext" $sc }}
{{- toYaml (list $c) }}
{{- end }}

{{/*
Refuse, before the API server does, the values it would reject; each message names the value.
Included by the Deployment template.
*/}}
{{- define "fastapi-app.validate" -}}
{{- $v := .Values }}
{{- if eq (int $v.service.port) (int $v.service.metricsPort) }}
{{- fail (printf "service.metricsPort (%d) must differ from service.port: a Service cannot have two ports with the same number" (int $v.service.metricsPort)) }}
{{- end }}
{{- if eq (int $v.containerPorts.http) (int $v.containerPorts.metrics) }}
{{- fail (printf "containerPorts.metrics (%d) must differ from containerPorts.http" (int $v.containerPorts.metrics)) }}
{{- end }}
{{- $name := include "fastapi-app.name" . }}
{{- if gt (len (printf "%s-test" $name)) 63 }}
{{- fail (printf "nameOverride: %q is too long: the label app.kubernetes.io/name=%s-test of the helm test Pod must be at most 63 characters (at most 58 for the name)" $name $name) }}
{{- end }}
{{- $fullname := include "fastapi-app.fullname" . }}
{{- /* What the full name comes from, for the messages: the value to change. */}}
{{- $source := printf "the release name %q (full name %q; change it or set fullnameOverride)" .Release.Name $fullname }}
{{- if $v.fullnameOverride }}
{{- $source = printf "fullnameOverride %q" $v.fullnameOverride }}
{{- else if $v.nameOverride }}
{{- $source = printf "the release name %q with nameOverride %q (full name %q; change either or set fullnameOverride)" .Release.Name $v.nameOverride $fullname }}
{{- end }}
{{- if and (ne $v.service.type "ClusterIP") (gt (len (printf "%s-metrics" $fullname)) 63) }}
{{- fail (printf "%s is too long: with service.type %s the metrics Service %s-metrics needs a name of at most 63 characters (at most 55 for the full name)" $source $v.service.type $fullname) }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) }}
{{- fail (printf "%s: the full name must be a DNS label (lower-case letters, digits and '-', starting with a letter): it names the Service" $source) }}
{{- end }}
{{- $selector := include "fastapi-app.selectorLabels" . | fromYaml }}
{{- $chartLabels := include "fastapi-app.chartLabels" . | fromYaml }}
{{- range $k, $_ := $v.podLabels }}
{{- if hasKey $selector $k }}
{{- fail (printf "podLabels: %q is a selector label the chart sets (%s); a pod label with another value would not match the Deployment's selector" $k (keys $selector | sortAlpha | join ", ")) }}
{{- end }}
{{- if hasKey $chartLabels $k }}
{{- fail (printf "podLabels: %q is a label the chart already sets; set partOf/commonLabels instead" $k) }}
{{- end }}
{{- end }}
{{- range $k, $_ := $v.podLabels }}
{{- if hasKey $v.commonLabels $k }}
{{- fail (printf "podLabels: %q is also in commonLabels; set it in one of them" $k) }}
{{- end }}
{{- end }}
{{- range $k, $_ := $v.commonLabels }}
{{- if hasKey $chartLabels $k }}
{{- fail (printf "commonLabels: %q is a label the chart already sets" $k) }}
{{- end }}
{{- end }}
{{- /* Names the API server requires to be DNS labels and unique within the pod; every
mount must name a volume of the pod. Checked after tpl, as rendered. */}}
{{- $label := "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" }}
{{- $volumes := dict "tmp" "the chart" "metrics" "the chart" }}
{{- range (include "fastapi-app.envFileVolumes" . | fromYamlArray) }}
{{- $_ := set $volumes . "envFromFiles" }}
{{- end }}
{{- range (tpl (toYaml $v.extraVolumes) $ | fromYamlArray) }}
{{- $name := toString .name }}
{{- if or (not (regexMatch $label $name)) (gt (len $name) 63) }}
{{- fail (printf "extraVolumes: volume name %q must be a DNS label (at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit)" $name) }}
{{- end }}
{{- if hasKey $volumes $name }}
{{- fail (printf "extraVolumes: volume name %q is already used by %s" $name (get $volumes $name)) }}
{{- end }}
{{- $_ := set $volumes $name "extraVolumes" }}
{{- end }}
{{- $mounts := dict "/tmp" true "/var/lib/fastapi-app/metrics" true "/var/run/fastapi-app/files" true }}
{{- range (tpl (toYaml $v.extraVolumeMounts) $ | fromYamlArray) }}
{{- if not (hasKey $volumes (toString .name)) }}
{{- fail (printf "extraVolumeMounts: %q (mountPath %s) names no volume of the pod (%s); add it to extraVolumes" (toString .name) .mountPath (keys $volumes | sortAlpha | join ", ")) }}
{{- end }}
{{- if hasKey $mounts .mountPath }}
{{- fail (printf "extraVolumeMounts: mountPath %q is already used in the app container" .mountPath) }}
{{- end }}
{{- $_ := set $mounts .mountPath true }}
{{- end }}
{{- $containers := dict "app" "the chart" }}
{{- range $field := list "initContainers" "sidecars" }}
{{- range (get $v $field) }}
{{- $c := include "fastapi-app.extraContainer" (list $ .) | fromYamlArray | first }}
{{- $name := toString $c.name }}
{{- if or (not (regexMatch $label $name)) (gt (len $name) 63) }}
{{- fail (printf "%s: container name %q must be a DNS label (at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit)" $field $name) }}
{{- end }}
{{- if hasKey $containers $name }}
{{- fail (printf "%s: container name %q is already used by %s" $field $name (get $containers $name)) }}
{{- end }}
{{- $_ := set $containers $name $field }}
{{- range $c.volumeMounts }}
{{- if not (hasKey $volumes (toString .name)) }}
{{- fail (printf "%s: container %q mounts %q, which names no volume of the pod (%s); add it to extraVolumes" $field $name (toString .name) (keys $volumes | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- /* An HTTPRoute never sends traffic to the metrics port: a RequestMirror filter may not
name this release's Services (the metrics port, the metrics Service, or a mirror of every
request back to the pods that already serve it). */}}
{{- if $v.httpRoute.enabled }}
{{- $own := list $fullname (include "fastapi-app.metricsServiceName" .) (printf "%s-metrics" $fullname) }}
{{- $ns := include "fastapi-app.namespace" . }}
{{- range $i, $f := $v.httpRoute.filters }}
{{- with $f.requestMirror }}
{{- $ref := .backendRef }}
{{- $isService := and (eq (default "" $ref.group) "") (eq (default "Service" $ref.kind) "Service") }}
{{- if and $isService (has $ref.name $own) (eq (default $ns $ref.namespace) $ns) }}
{{- fail (printf "httpRoute.filters[%d].requestMirror.backendRef: Service %s port %v is this release's own (its metrics port %v is never routed, and a mirror to the http port would send every request twice); mirror to another Service" $i $ref.name $ref.port $v.service.metricsPort) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.config.cors.allowCredentials (has "*" $v.config.cors.allowOrigins) }}
{{- fail "config.cors.allowCredentials=true needs explicit config.cors.allowOrigins, not \"*\" (browsers refuse credentials with a wildcard origin)" }}
{{- end }}
{{- end }}

{{/*
Volume name of an envFromFiles entry: one volume per Secret or ConfigMap. A DNS label (the API
server refuses anything else as a volume name): the kind, the object's name with every character
outside [a-z0-9-] (the dots of a DNS subdomain) made '-' and cut to fit, and 8 hex characters of
the sha256 of kind/name, so two objects whose names share a long prefix, or differ only by
dots and hyphens, never share a volume.
*/}}
{{- define "fastapi-app.envFileVolume" -}}
{{- $kind := "" }}
{{- $name := "" }}
{{- if .secret }}
{{- $kind = "secret" }}
{{- $name = .secret }}
{{- else if .configMap }}
{{- $kind = "configmap" }}
{{- $name = .configMap }}
{{- else }}
{{- fail (printf "envFromFiles: entry %s needs `secret` or `configMap`" .env) }}
{{- end }}
{{- $hash := printf "%s/%s" $kind $name | sha256sum | trunc 8 }}
{{- $room := sub 63 (add (len $kind) 10) | int }}
{{- $readable := regexReplaceAll "[^a-z0-9-]+" (lower $name) "-" | trunc $room | trimAll "-" }}
{{- if $readable }}
{{- printf "%s-%s-%s" $kind $readable $hash }}
{{- else }}
{{- printf "%s-%s" $kind $hash }}
{{- end }}
{{- end }}

{{/* The distinct volume names of envFromFiles, as a YAML list. */}}
{{- define "fastapi-app.envFileVolumes" -}}
{{- $names := list }}
{{- range .Values.envFromFiles }}
{{- $names = append $names (include "fastapi-app.envFileVolume" .) }}
{{- end }}
{{- toYaml ($names | uniq) }}
{{- end }}

{{/*
checkov skip annotations for a pod owner: CKV_K8S_15 wants imagePullPolicy Always, which makes
every pod start depend on the registry; the chart treats tags as immutable (latest is refused)
and IfNotPresent is its default. Pinning image.digest satisfies the check without a skip.
*/}}
{{- define "fastapi-app.checkovSkips" -}}
{{- if and (ne (include "fastapi-app.pullPolicy" .) "Always") (not .Values.image.digest) }}
checkov.io/skip1: CKV_K8S_15=pullPolicy {{ include "fastapi-app.pullPolicy" . }} with immutable tags; pin image.digest to satisfy the check
{{- end }}
{{- end }}
