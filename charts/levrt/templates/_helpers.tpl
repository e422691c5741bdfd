{{/*
Labels of every object of the chart. Never `app.kubernetes.io/managed-by: levrt`: that label marks
the task objects `levrt gc` deletes.
*/}}
{{- define "levrt.labels" -}}
app.kubernetes.io/name: levrt
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: levrt
{{- end }}

{{/* The labels selecting the store Pods (StatefulSet, Services, NetworkPolicy). */}}
{{- define "levrt.storeSelector" -}}
app.kubernetes.io/name: levrt
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: store
{{- end }}

{{/* The Secret (key uri) the SDK and task Pods read the store URI from (LEVRT_STORE_SECRET). */}}
{{- define "levrt.storeSecret" -}}
{{- if eq .Values.store.engine "external" -}}
{{- required "store.engine external needs store.external.secretName: the Secret (key uri) holding your store's URI" .Values.store.external.secretName -}}
{{- else -}}
levrt-store
{{- end -}}
{{- end }}

{{/* In-cluster DNS name of the store Service. */}}
{{- define "levrt.storeHost" -}}
levrt-store.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end }}

{{/* The tool registry's own database: levrt._core.registry.REGISTRY_DATABASE (a test pins them equal). */}}
{{- define "levrt.registryDatabase" -}}
levrt_registry
{{- end }}

{{/* levrt's journal (job records, task status, log archives): levrt._clients.store.journal_database. */}}
{{- define "levrt.journalDatabase" -}}
{{ .Values.settings.database }}_journal
{{- end }}

{{- define "levrt.runtimeImage" -}}
{{- .Values.runtime.image | default (printf "levrt.local/runtime:%s" .Chart.AppVersion) }}
{{- end }}

{{/* Where the node cache keeps this release's runtime image's bundle on every node. */}}
{{- define "levrt.runtimeHostPath" -}}
{{ .Values.runtime.nodeCache.hostPath | trimSuffix "/" }}/{{ include "levrt.runtimeImage" . | sha256sum | trunc 12 }}
{{- end }}
