{{- define "stellaops.labels" -}}
app.kubernetes.io/part-of: stellaops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.global.release | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
