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

{{/* The DNS names of the webhook's and the controller's Services, the
serving certificate's names. */}}
{{- define "nemutator.dnsNames" -}}
- nemutator.{{ .Release.Namespace }}.svc
- nemutator.{{ .Release.Namespace }}.svc.cluster.local
- nemutator.{{ .Release.Namespace }}
- nemutator
- nemutator-controller.{{ .Release.Namespace }}.svc
- nemutator-controller.{{ .Release.Namespace }}.svc.cluster.local
- nemutator-controller.{{ .Release.Namespace }}
- nemutator-controller
{{- end -}}

{{/* Labels of the controller's objects. */}}
{{- define "nemutator.controllerLabels" -}}
app.kubernetes.io/component: controller
app.kubernetes.io/name: nemutator
app.kubernetes.io/part-of: nemutator
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the controller's pods. */}}
{{- define "nemutator.controllerSelector" -}}
app.kubernetes.io/component: controller
app.kubernetes.io/name: nemutator
{{- end -}}

{{/* What the secrets configuration needs, as in `nemutator install`
(nemutator-core/src/install/objects.rs): "true" or "". */}}
{{- define "nemutator.kubernetesAuth" -}}
{{- $cfg := include "nemutator.config" . | fromYaml -}}
{{- if and (dig "secrets" "enabled" true $cfg) (eq (dig "secrets" "resolver" "file" $cfg) "vault") (dig "secrets" "vault" "address" "" $cfg) (eq (dig "secrets" "vault" "auth" "kubernetes" $cfg) "kubernetes") -}}
true
{{- end -}}
{{- end -}}

{{- define "nemutator.pullSecrets" -}}
{{- $cfg := include "nemutator.config" . | fromYaml -}}
{{- if and (dig "secrets" "enabled" true $cfg) (dig "secrets" "registry" "lookup" true $cfg) (dig "secrets" "registry" "pull_secrets" false $cfg) -}}
true
{{- end -}}
{{- end -}}

{{/* metrics.source: kubernetes: the webhook lists metrics.k8s.io pod
metrics: "true" or "". */}}
{{- define "nemutator.metricsReader" -}}
{{- $cfg := include "nemutator.config" . | fromYaml -}}
{{- if eq (dig "metrics" "source" "file" $cfg) "kubernetes" -}}
true
{{- end -}}
{{- end -}}

{{/* placement.enabled: the webhook watches the pods labelled noisy: "true"
or "". */}}
{{- define "nemutator.placement" -}}
{{- $cfg := include "nemutator.config" . | fromYaml -}}
{{- if dig "placement" "enabled" false $cfg -}}
true
{{- end -}}
{{- end -}}

{{/* The webhook's pods mount their token: to log in to Vault themselves
(env injection with Kubernetes auth), to read pull secrets, to list
metrics.k8s.io pod metrics, or to watch noisy pods (placement). */}}
{{- define "nemutator.mountToken" -}}
{{- $cfg := include "nemutator.config" . | fromYaml -}}
{{- $env := or (eq (dig "secrets" "injection" "exec" $cfg) "env") (dig "secrets" "env_namespaces" list $cfg) -}}
{{- if or (and (include "nemutator.kubernetesAuth" .) $env) (include "nemutator.pullSecrets" .) (include "nemutator.metricsReader" .) (include "nemutator.placement" .) -}}
true
{{- end -}}
{{- end -}}
