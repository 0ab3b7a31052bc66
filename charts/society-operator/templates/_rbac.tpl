{{/*
Every permission the operator has, in one place. Each rule names the calls that need it; a test
compares these rules with the API calls the operator makes on a real control plane, read from its
audit log (tests/cluster/test_rbac.py).
*/}}

{{/* In every watched namespace (a ClusterRole when cluster-wide). */}}
{{- define "society-operator.rules" -}}
# Societies: kopf lists and watches them (the reconciler reads them from that cache); get
# after a conflict on the status write that the watch does not explain within seconds.
- apiGroups: [society.dev]
  resources: [societies]
  verbs: [get, list, watch]
# The status: replaced by the reconciler under the resourceVersion it read.
- apiGroups: [society.dev]
  resources: [societies/status]
  verbs: [update]
# Children carry ownerReferences with blockOwnerDeletion, which needs update on the finalizers.
- apiGroups: [society.dev]
  resources: [societies/finalizers]
  verbs: [update]
# The debate and training Jobs: created, watched, suspended and resumed (spec.suspend).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, patch]
# The vLLM servers: created, watched, scaled to zero, deleted between iterations.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
# Their Services: watched too, so that one deleted by someone is created again.
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, delete]
# Pods: waiting reasons (ImagePullBackOff, Unschedulable), termination messages, GPU-seconds.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# The artifact claim the operator creates when a Society names none.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch, create]
# The API key of each Society's vLLM servers, made once (a create of an existing one is a
# no-op); never read back, listed or watched: the pods read it by secretKeyRef.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
{{- if .Values.networkPolicy.enabled }}
# A Society's NetworkPolicies (only its debate pods reach its servers; nothing reaches its
# debate and training pods), only ever created.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create]
{{- end }}
# Kueue's Workloads (Societies with spec.queueName): suspending deactivates those of the Jobs
# (spec.active) rather than fight Kueue over Job.spec.suspend; found by their Job's uid label.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list, patch]
# Events on Societies (kopf posts them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/*
Cluster-scoped reads kopf makes in every mode: it watches CustomResourceDefinitions to notice the
Society CRD (re)appear, and, when given namespaces, lists and watches namespaces to resolve them.
Read-only; without them kopf only logs a warning and notices changes at restart.
*/}}
{{- define "society-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{/* In the release namespace: the leader-election Lease. Create cannot be limited by name. */}}
{{- define "society-operator.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ .Values.leaderElection.leaseName | quote }}]
  verbs: [get, update]
{{- end -}}
