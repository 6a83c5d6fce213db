{{/* Labels of every object. */}}
{{- define "nemutator.labels" -}}
app.kubernetes.io/component: webhook
app.kubernetes.io/name: nemutator
app.kubernetes.io/part-of: nemutator
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the webhook's pods. */}}
{{- define "nemutator.selector" -}}
app.kubernetes.io/component: webhook
app.kubernetes.io/name: nemutator
{{- end -}}

{{/* The configuration file's text: `config` as a YAML object, or the
text of a file given with --set-file config=FILE. */}}
{{- define "nemutator.config" -}}
{{- if kindIs "string" .Values.config -}}
{{ .Values.config }}
{{- else -}}
{{ toYaml .Values.config }}
{{- end -}}
{{- end -}}

{{/* The Service's DNS names, the serving certificate's names. */}}
{{- define "nemutator.dnsNames" -}}
- nemutator.{{ .Release.Namespace }}.svc
- nemutator.{{ .Release.Namespace }}.svc.cluster.local
- nemutator.{{ .Release.Namespace }}
- nemutator
{{- end -}}
