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

{{/* The configuration file's text. */}}
{{- define "nemutator.config" -}}
{{ toYaml .Values.config }}
{{- end -}}

{{/* The Service's DNS names, the serving certificate's names. */}}
{{- define "nemutator.dnsNames" -}}
- nemutator.{{ .Release.Namespace }}.svc
- nemutator.{{ .Release.Namespace }}.svc.cluster.local
- nemutator.{{ .Release.Namespace }}
- nemutator
{{- end -}}
