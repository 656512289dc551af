{{/*
Names, labels and the pieces shared by the gateway and router templates.
*/}}

{{/* The chart's name (nameOverride). */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name, at most 40 characters: the longest derived name,
`<base>-redis-headless`, stays a valid Service name (63). Pod names, which
are the nodes' ids (SWITCHBOARD_NODE_ID, at most 64), are cut to 63 by
Kubernetes anyway.
*/}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "switchboard.componentSelectorLabels" -}}
{{ include "switchboard.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "switchboard.componentLabels" -}}
{{ include "switchboard.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The Switchboard image: repository:tag or repository@digest. */}}
{{- define "switchboard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret with the cluster secret, the JWT secret and the API key. */}}
{{- define "switchboard.secretName" -}}
{{- default (include "switchboard.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "switchboard.configMapName" -}}
{{- printf "%s-config" (include "switchboard.fullname" .) }}
{{- end }}

{{- define "switchboard.authConfigMapName" -}}
{{- default (printf "%s-auth" (include "switchboard.fullname" .)) .Values.auth.existingConfigMap }}
{{- end }}

{{- define "switchboard.redisName" -}}
{{- printf "%s-redis" (include "switchboard.fullname" .) }}
{{- end }}

{{/*
A setting's value as a quoted string. YAML numbers reach templates as
float64, which print as 1e+06 from a million on: whole numbers are printed
as integers.
*/}}
{{- define "switchboard.envValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . | toString | quote }}
{{- else }}
{{- toString . | quote }}
{{- end }}
{{- end }}

{{/*
`config.extra` as container env entries: after envFrom, so they override
the ConfigMap's settings.
*/}}
{{- define "switchboard.extraConfigEnv" -}}
{{- range $name, $value := .Values.config.extra }}
- name: {{ $name }}
  value: {{ include "switchboard.envValue" $value }}
{{- end }}
{{- end }}

{{/* `host:port` of this pod for the others: pod IP (bracketed on IPv6). */}}
{{- define "switchboard.podAddress" -}}
{{- if .root.Values.ipv6 }}
{{- printf "[$(POD_IP)]:%d" (int .port) }}
{{- else }}
{{- printf "$(POD_IP):%d" (int .port) }}
{{- end }}
{{- end }}

{{/*
Checks of the values that the templates rely on; fails the render with a
message naming the value.
*/}}
{{- define "switchboard.validate" -}}
{{- if not (has .Values.auth.mode (list "hs256" "publicKey" "jwks")) }}
{{- fail (printf "auth.mode must be hs256, publicKey or jwks (got %q)" .Values.auth.mode) }}
{{- end }}
{{- if and (eq .Values.auth.mode "publicKey") (not .Values.auth.publicKey) (not .Values.auth.existingConfigMap) }}
{{- fail "auth.mode=publicKey needs auth.publicKey or auth.existingConfigMap (key public.pem)" }}
{{- end }}
{{- if and (eq .Values.auth.mode "jwks") (not .Values.auth.jwks) (not .Values.auth.existingConfigMap) }}
{{- fail "auth.mode=jwks needs auth.jwks or auth.existingConfigMap (key jwks.json)" }}
{{- end }}
{{- if and .Values.redis.internal.enabled (or .Values.redis.external.url .Values.redis.external.existingSecret) }}
{{- fail "redis.external.* is set: set redis.internal.enabled=false to use the external Redis" }}
{{- end }}
{{- if and (not .Values.redis.internal.enabled) (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) }}
{{- fail "redis.internal.enabled=false needs redis.external.url or redis.external.existingSecret" }}
{{- end }}
{{- if not (has .Values.config.logFormat (list "plain" "json")) }}
{{- fail (printf "config.logFormat must be plain or json (got %q)" .Values.config.logFormat) }}
{{- end }}
{{- if lt (int .Values.gateway.drainPeriodSeconds) 0 }}
{{- fail "gateway.drainPeriodSeconds must be 0 or more" }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds of a gateway: preStop + drain + extra. */}}
{{- define "switchboard.gatewayGracePeriod" -}}
{{- add .Values.gateway.preStopSleepSeconds .Values.gateway.drainPeriodSeconds .Values.gateway.terminationGraceExtraSeconds }}
{{- end }}

{{/* SWITCHBOARD_REDIS_URL as a container env entry. */}}
{{- define "switchboard.redisUrlEnv" -}}
- name: SWITCHBOARD_REDIS_URL
{{- if .Values.redis.internal.enabled }}
  value: {{ printf "redis://%s:6379" (include "switchboard.redisName" .) | quote }}
{{- else if .Values.redis.external.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.existingSecretKey }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.redisName" . }}
      key: redis-url
{{- end }}
{{- end }}

{{/* Env entries every Switchboard pod has: its IP and its node id. */}}
{{- define "switchboard.podEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: SWITCHBOARD_NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/* Pod annotations that restart the pods when their configuration changes. */}}
{{- define "switchboard.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}
