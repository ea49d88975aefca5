{{- /* The operator's RBAC rules, shared by the cluster-wide and the namespaced mode. */ -}}
{{- define "vlm-operator.namespacedRules" }}
# VisionModels: the reconciler reads one by name (get), kopf watches them (list, watch) and
# keeps its progress annotations and its finalizer on them (patch).
- apiGroups: [vlm-operator.io]
  resources: [visionmodels]
  verbs: [get, list, watch, patch]
# Conditions, the plan and the autoscaling decision go to the status subresource.
- apiGroups: [vlm-operator.io]
  resources: [visionmodels/status]
  verbs: [patch]
# The operator's own autoscaler writes spec.replicas through the scale subresource.
- apiGroups: [vlm-operator.io]
  resources: [visionmodels/scale]
  verbs: [patch]
# Children's owner references set blockOwnerDeletion; where the
# OwnerReferencesPermissionEnforcement admission plugin runs, that needs update on the owner's
# finalizers.
- apiGroups: [vlm-operator.io]
  resources: [visionmodels/finalizers]
  verbs: [update]
# The vLLM Deployment: server-side applied (create, patch), read for its ready replicas (get),
# watched to repair drift (list, watch). Never deleted: garbage collection follows the owner.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
# The Service in front of the vLLM pods: server-side applied, watched to repair drift.
# Every child is read by name before it is applied: one that the VisionModel does not own
# is never changed (NameConflict).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# The vLLM pods' PodDisruptionBudget: server-side applied, watched to repair drift.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch]
# A PodMonitor for vLLM's /metrics, applied when the Prometheus operator's CRD is installed.
- apiGroups: [monitoring.coreos.com]
  resources: [podmonitors]
  verbs: [get, create, patch]
# scaling.driver keda: the KEDA ScaledObject that writes replicas is applied; under another
# driver it is read, to check that the VisionModel owns it, and deleted.
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, create, patch, delete]
# scaling.driver hpa: the same for the HorizontalPodAutoscaler.
# They are listed once at start-up into the operator's cache (list), so no VisionModel reads
# its own.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, create, patch, delete]
# spec.model.architecture.configMapRef: the config.json of a model outside the catalog, by name.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
# The vLLM pods: the scheduler's message for unschedulable ones (status), and the addresses of
# ready ones (the pods metrics source), from a cache the operator fills by a list and keeps by a
# watch.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Events on VisionModels: the operator's decisions and kopf's handler errors.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{- define "vlm-operator.clusterReadRules" }}
# GPU products, memory and capacity come from the Nodes' labels and allocatable resources.
# Read-only.
- apiGroups: [""]
  resources: [nodes]
  verbs: [list, watch]
# Pods, in every namespace: the GPUs already held on each node (what is free for a placement).
# Read-only; cluster-wide even in namespaced mode, because other namespaces' pods hold GPUs too.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Whether KEDA's and the Prometheus operator's kinds are installed, by CRD name.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get]
{{- end }}

{{- define "vlm-operator.peeringRules" }}
# kopf peering (replicaCount > 1): every pod watches the peering objects to see which pod acts.
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  verbs: [list, watch]
# ... and writes its keep-alive into this release's peering object only; the operator checks at
# start-up that it exists.
- apiGroups: [kopf.dev]
  resources: [{{ .resource }}]
  resourceNames: [{{ .name | quote }}]
  verbs: [get, patch]
{{- end }}
