{{/* Resource names: <release>-<chart> unless the release name already holds the chart's, cut to 63 characters. */}}
{{- define "celer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "celer.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The engine pods' labels that the router's --k8s-label-selector and the engine ServiceMonitor match. */}}
{{- define "celer.engineSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: serving-engine
{{- end -}}

{{- define "celer.routerSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: router
{{- end -}}

{{/* The same engine labels in Kubernetes' selector syntax, for `celer router --k8s-label-selector`. */}}
{{- define "celer.engineLabelSelector" -}}
{{- $labels := include "celer.engineSelectorLabels" . | fromYaml -}}
{{- $terms := list -}}
{{- range $key := keys $labels | sortAlpha -}}
{{- $terms = append $terms (printf "%s=%s" $key (get $labels $key)) -}}
{{- end -}}
{{- join "," $terms -}}
{{- end -}}

{{/* image: the top-level image with the component's overrides; call with (dict "root" $ "image" <overrides>). */}}
{{- define "celer.image" -}}
{{- $image := merge (deepCopy (default (dict) .image)) .root.Values.image -}}
{{- printf "%s:%s" $image.repository (toString $image.tag) -}}
{{- end -}}

{{- define "celer.imagePullPolicy" -}}
{{- $image := merge (deepCopy (default (dict) .image)) .root.Values.image -}}
{{- $image.pullPolicy -}}
{{- end -}}

{{/* A model entry's resource name: <fullname>-<name>; call with (dict "root" $ "model" <modelSpec entry>). */}}
{{- define "celer.modelFullname" -}}
{{- printf "%s-%s" (include "celer.fullname" .root) .model.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
A modelSpec entry over servingEngineSpec.modelDefaults, as YAML (read back with fromYaml): the entry's keys win, maps
are merged key by key, and anything else (lists included) is replaced. Sprig's merge is not used because it takes
false and 0 in the entry for unset and lets the default win.
*/}}
{{- define "celer.overlay" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .over -}}
{{- if and (kindIs "map" $value) (kindIs "map" (get $out $key)) -}}
{{- $_ := set $out $key (include "celer.overlay" (dict "over" $value "base" (get $out $key)) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The models to deploy: each enabled entry over the defaults, checked, as a YAML list. */}}
{{- define "celer.models" -}}
{{- $models := list -}}
{{- range $entry := .Values.servingEngineSpec.modelSpec -}}
{{- $model := include "celer.overlay" (dict "over" $entry "base" $.Values.servingEngineSpec.modelDefaults) | fromYaml -}}
{{- if $model.enabled -}}
{{- include "celer.validateModel" $model -}}
{{- $models = append $models $model -}}
{{- end -}}
{{- end -}}
{{- toYaml $models -}}
{{- end -}}

{{- define "celer.servedModelName" -}}
{{- default .name .servedModelName -}}
{{- end -}}

{{- define "celer.routerServiceAccountName" -}}
{{- if .Values.routerSpec.serviceAccount.create -}}
{{- default (printf "%s-router" (include "celer.fullname" .)) .Values.routerSpec.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.routerSpec.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Checks a modelSpec entry before anything is rendered for it, so a bad value fails `helm install` with one line
rather than deploying a server that exits or ignores it.
*/}}
{{- define "celer.validateModel" -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString .name)) -}}
{{- fail (printf "servingEngineSpec.modelSpec[].name %q: must be a DNS label (lower-case letters, digits and '-'); it names the model's Deployment and Service." (toString .name)) -}}
{{- end -}}
{{- $tp := int64 (default 1 .celerConfig.tensorParallelSize) -}}
{{- $gpus := int64 (default 0 .requestGPU) -}}
{{- if lt $gpus 0 -}}
{{- fail (printf "servingEngineSpec.modelSpec %s: requestGPU %d: must be 0 or more." .name $gpus) -}}
{{- end -}}
{{- if and (gt $gpus 0) (ne $gpus $tp) -}}
{{- fail (printf "servingEngineSpec.modelSpec %s: requestGPU %d with tensorParallelSize %d: a Celer server runs a rank per GPU, so it needs exactly tensorParallelSize GPUs; set both alike, and add replicas for throughput." .name $gpus $tp) -}}
{{- end -}}
{{- if .keda.enabled -}}
{{- /* The trigger counts requests queued on running servers: with none running nothing queues, so 0 would never scale up. */ -}}
{{- if lt (int64 .keda.minReplicaCount) 1 -}}
{{- fail (printf "servingEngineSpec.modelSpec %s: keda.minReplicaCount %v: must be at least 1; the trigger reads the queue of running servers, so from 0 nothing would ever scale up." .name .keda.minReplicaCount) -}}
{{- end -}}
{{- if lt (int64 .keda.maxReplicaCount) (int64 .keda.minReplicaCount) -}}
{{- fail (printf "servingEngineSpec.modelSpec %s: keda.maxReplicaCount %v is below minReplicaCount %v." .name .keda.maxReplicaCount .keda.minReplicaCount) -}}
{{- end -}}
{{- end -}}
{{- if and .modelCache.enabled (not (hasPrefix "/" (toString .modelCache.mountPath))) -}}
{{- fail (printf "servingEngineSpec.modelSpec %s: modelCache.mountPath %q: must be an absolute path." .name (toString .modelCache.mountPath)) -}}
{{- end -}}
{{- end -}}

{{/*
The arguments of `celer serve` for a model (call with (dict "root" $ "model" <model>)), as a YAML list of strings.
Every flag is one `celer serve` has (src/Celer.Cli/ServeCommand.cs, EngineOptions.cs); the optional ones are passed
only when set, so Celer's defaults hold otherwise.
*/}}
{{- define "celer.engineArgs" -}}
{{- $engine := .root.Values.servingEngineSpec -}}
{{- $config := .model.celerConfig -}}
{{- $args := list -}}
{{- with .model.model -}}
{{- $args = append $args . -}}
{{- end -}}
{{- $args = concat $args (list "--host" "0.0.0.0" "--port" (include "celer.scalar" $engine.containerPort)) -}}
{{- $args = concat $args (list "--served-model-name" (include "celer.servedModelName" .model)) -}}
{{- $args = concat $args (list "--shutdown-timeout" (include "celer.scalar" $engine.shutdownTimeout)) -}}
{{- if gt (int64 (default 0 .model.requestGPU)) 0 -}}
{{- $args = concat $args (list "--device" "cuda") -}}
{{- end -}}
{{- $optional := list
      (list "--max-model-len" $config.maxModelLen)
      (list "--max-num-seqs" $config.maxNumSeqs)
      (list "--max-num-batched-tokens" $config.maxNumBatchedTokens)
      (list "--gpu-memory-utilization" $config.gpuMemoryUtilization)
      (list "--kv-cache-memory" $config.kvCacheMemory)
      (list "--kv-offload-size" $config.kvOffloadSize)
      (list "--dtype" $config.dtype)
      (list "--kv-cache-dtype" $config.kvCacheDtype)
      (list "--quantization" $config.quantization)
      (list "--tensor-parallel-size" (ternary $config.tensorParallelSize nil (ne (toString $config.tensorParallelSize) "1"))) -}}
{{- $args = concat $args (include "celer.optionalFlags" $optional | fromYamlArray) -}}
{{- if eq (toString $config.enablePrefixCaching) "true" -}}
{{- $args = append $args "--enable-prefix-caching" -}}
{{- else if eq (toString $config.enablePrefixCaching) "false" -}}
{{- $args = append $args "--no-enable-prefix-caching" -}}
{{- end -}}
{{- range $config.extraArgs -}}
{{- $args = append $args (toString .) -}}
{{- end -}}
{{- toYaml $args -}}
{{- end -}}

{{/* The arguments of `celer router`, as a YAML list of strings; every flag is one src/Celer.Cli/RouterCommand.cs has. */}}
{{- define "celer.routerArgs" -}}
{{- $router := .Values.routerSpec -}}
{{- $logics := list "roundrobin" "session" "prefix-aware" "least-loaded" -}}
{{- if not (has $router.routingLogic $logics) -}}
{{- fail (printf "routerSpec.routingLogic %q: must be one of %s." (toString $router.routingLogic) (join ", " $logics)) -}}
{{- end -}}
{{- $args := list "--service-discovery" "k8s"
      "--k8s-label-selector" (include "celer.engineLabelSelector" .)
      "--k8s-namespace" .Release.Namespace
      "--k8s-port" (include "celer.scalar" .Values.servingEngineSpec.containerPort)
      "--host" "0.0.0.0"
      "--port" (include "celer.scalar" $router.containerPort)
      "--routing-logic" $router.routingLogic -}}
{{- if eq $router.routingLogic "session" -}}
{{- $args = concat $args (list "--session-key" (required "routerSpec.sessionKey is required with routingLogic session" $router.sessionKey)) -}}
{{- end -}}
{{- $optional := list
      (list "--health-check-interval" $router.healthCheckInterval)
      (list "--metrics-scrape-interval" $router.metricsScrapeInterval)
      (list "--prefix-chunk-size" $router.prefixChunkSize)
      (list "--prefix-max-chunks" $router.prefixMaxChunks)
      (list "--circuit-breaker-threshold" $router.circuitBreakerThreshold)
      (list "--circuit-breaker-cooldown" $router.circuitBreakerCooldown)
      (list "--log-level" $router.logLevel) -}}
{{- $args = concat $args (include "celer.optionalFlags" $optional | fromYamlArray) -}}
{{- range $router.extraArgs -}}
{{- $args = append $args (toString .) -}}
{{- end -}}
{{- toYaml $args -}}
{{- end -}}

{{/* From a list of (flag value) pairs, `flag value` for each value that is set (not null, not ""), as a YAML list. */}}
{{- define "celer.optionalFlags" -}}
{{- $args := list -}}
{{- range $pair := . -}}
{{- $value := index $pair 1 -}}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) -}}
{{- $args = concat $args (list (index $pair 0) (include "celer.scalar" $value)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $args -}}
{{- end -}}

{{/*
A value as a flag takes it. Helm reads numbers in values as float64, which print as 1e+06 from a million up: whole
numbers are printed as integers, others as they are.
*/}}
{{- define "celer.scalar" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
