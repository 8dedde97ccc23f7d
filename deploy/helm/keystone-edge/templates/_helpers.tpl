{{/*
keystone-edge chart helpers: names, labels, the edge's config.yaml, the pod.
*/}}

{{- define "keystone-edge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name of every object: <release>-keystone-edge unless it already says so. */}}
{{- define "keystone-edge.fullname" -}}
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

{{- define "keystone-edge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keystone-edge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keystone-edge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "keystone-edge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: openstack
{{- end }}

{{/* Where the pod sees its files. */}}
{{- define "keystone-edge.configDir" -}}/etc/keystone-edge{{- end }}
{{- define "keystone-edge.keyRepository" -}}/etc/keystone/fernet-keys{{- end }}
{{- define "keystone-edge.tlsDir" -}}/etc/keystone-edge-tls{{- end }}

{{/*
The edge's config.yaml: .Values.config with the options the chart owns (the listeners and
the key repository's mount point) set from the chart's values.
*/}}
{{- define "keystone-edge.config" -}}
{{- range list "listen" "admin_listen" "identity_listen" }}
{{- if hasKey $.Values.config . }}
{{- fail (printf "config.%s is set by the chart: use ports.* and identity.* instead" .) }}
{{- end }}
{{- end }}
{{- if hasKey .Values.config "tls" }}
{{- fail "config.tls is set by the chart: give the certificate as tls.existingSecret" }}
{{- end }}
{{- $config := deepCopy .Values.config }}
{{- $fernet := deepCopy (default (dict) $config.fernet) }}
{{- if hasKey $fernet "key_repository" }}
{{- fail "config.fernet.key_repository is set by the chart: give the keys as fernetKeys.existingSecret" }}
{{- end }}
{{- $_ := set $fernet "key_repository" (include "keystone-edge.keyRepository" .) }}
{{- $_ = set $config "fernet" $fernet }}
{{- $_ = set $config "listen" (printf "%s:%d" .Values.bindAddress (int .Values.ports.proxy)) }}
{{- $_ = set $config "admin_listen" (printf "%s:%d" .Values.bindAddress (int .Values.ports.admin)) }}
{{- if .Values.identity.enabled }}
{{- $_ = set $config "identity_listen" (printf "%s:%d" .Values.bindAddress (int .Values.identity.port)) }}
{{- end }}
{{- if .Values.tls.existingSecret }}
{{- $dir := include "keystone-edge.tlsDir" . }}
{{- $tls := dict "certfile" (printf "%s/tls.crt" $dir) "keyfile" (printf "%s/tls.key" $dir) "min_version" .Values.tls.minVersion }}
{{- if .Values.tls.clientCaKey }}
{{- $_ = set $tls "client_cafile" (printf "%s/%s" $dir .Values.tls.clientCaKey) }}
{{- end }}
{{- $_ = set $config "tls" $tls }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The pod template's spec, the same in both modes but for the host network. */}}
{{- define "keystone-edge.podSpec" -}}
{{- $hostNetwork := and (eq .Values.mode "daemonset") .Values.daemonset.hostNetwork }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add .Values.preStopSleepSeconds .Values.grace) }}
{{- fail "terminationGracePeriodSeconds must exceed preStopSleepSeconds + grace: requests in flight would be cut" }}
{{- end }}
{{- if $hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: keystone-edge
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      - serve
      - --config
      - {{ include "keystone-edge.configDir" . }}/config.yaml
      - --grace
      - {{ .Values.grace | quote }}
      - --log-level
      - {{ .Values.logLevel }}
    {{- with .Values.env }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      - name: api
        containerPort: {{ .Values.ports.proxy }}
        protocol: TCP
      - name: admin
        containerPort: {{ .Values.ports.admin }}
        protocol: TCP
      {{- if .Values.identity.enabled }}
      - name: identity
        containerPort: {{ .Values.identity.port }}
        protocol: TCP
      {{- end }}
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 2
    livenessProbe:
      httpGet:
        path: /healthz
        port: admin
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    lifecycle:
      preStop:
        sleep:
          seconds: {{ .Values.preStopSleepSeconds }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      runAsGroup: 65532
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      privileged: false
      capabilities:
        drop: [ALL]
      seccompProfile:
        type: RuntimeDefault
    volumeMounts:
      - name: config
        mountPath: {{ include "keystone-edge.configDir" . }}
        readOnly: true
      - name: fernet-keys
        mountPath: {{ include "keystone-edge.keyRepository" . }}
        readOnly: true
      {{- if .Values.tls.existingSecret }}
      - name: tls
        mountPath: {{ include "keystone-edge.tlsDir" . }}
        readOnly: true
      {{- end }}
      {{- with .Values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    projected:
      defaultMode: 0440
      sources:
        - configMap:
            name: {{ include "keystone-edge.fullname" . }}
        {{- with .Values.secrets.existingSecret }}
        - secret:
            name: {{ . }}
            items:
              {{- range $.Values.secrets.keys }}
              - key: {{ . }}
                path: secrets/{{ . }}
              {{- end }}
        {{- end }}
  - name: fernet-keys
    secret:
      secretName: {{ required "fernetKeys.existingSecret: the Secret holding the region's key repository" .Values.fernetKeys.existingSecret }}
      defaultMode: 0440
  {{- with .Values.tls.existingSecret }}
  - name: tls
    secret:
      secretName: {{ . }}
      defaultMode: 0440
      items:
        - key: tls.crt
          path: tls.crt
        - key: tls.key
          path: tls.key
        {{- with $.Values.tls.clientCaKey }}
        - key: {{ . }}
          path: {{ . }}
        {{- end }}
  {{- end }}
  {{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
