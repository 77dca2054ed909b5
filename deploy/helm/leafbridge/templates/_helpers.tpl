{{- /* Shared pieces of the templates; each mirrors a function of src/install/types.ts or src/install/workloads.ts. */ -}}

{{- /* selector(component) */ -}}
{{- define "leafbridge.selector" -}}
app.kubernetes.io/name: leafbridge
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- /* labels(component) */ -}}
{{- define "leafbridge.labels" -}}
{{ include "leafbridge.selector" . }}
app.kubernetes.io/part-of: leafbridge
{{- end }}

{{- define "leafbridge.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- /* The sibling of the device-plugin directory that holds the PodResources socket. */ -}}
{{- define "leafbridge.podResourcesDir" -}}
{{ clean (printf "%s/pod-resources" (dir .Values.devicePluginDir)) }}
{{- end }}

{{- /* needs(o): what the chosen handlers need of the node, from leafbridge.handlerNeeds (_handlers.tpl). */ -}}
{{- define "leafbridge.needs" -}}
{{- $table := fromYaml (include "leafbridge.handlerNeeds" .) -}}
{{- $needs := dict "hostNetwork" false "hostDevices" false -}}
{{- range .Values.handlers -}}
{{- $need := get $table . | default dict -}}
{{- if $need.hostNetwork }}{{ $_ := set $needs "hostNetwork" true }}{{ end -}}
{{- if $need.hostDevices }}{{ $_ := set $needs "hostDevices" true }}{{ end -}}
{{- end -}}
{{- toYaml $needs -}}
{{- end }}

{{- /* RESTRICTED: the controller and the hub, Pod Security "restricted". */ -}}
{{- define "leafbridge.restricted" -}}
runAsUser: 65532
runAsGroup: 65532
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
