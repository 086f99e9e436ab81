# The local single-node Kubernetes cluster (issue 14) and the publishing path (included by
# the top Makefile). Needs root (kubelet, containerd, network); binaries are built once per
# machine from Go modules into ~/.cache/fastapi-kit (scripts/cluster/build.sh).
#
#   make cluster-up                      etcd, API server, controller-manager, scheduler,
#                                        containerd + kubelet, bridge CNI, kube-proxy, CoreDNS,
#                                        the registry on 127.0.0.1:15000; prints the kubeconfig
#   make cluster-deploy                  image -> registry, chart -> oci://, install, helm test,
#                                        port-forward + Locust smoke (scripts/cluster/deploy.sh)
#   make cluster-metrics-server          metrics-server (kubectl top, HPA) on the running cluster
#   make cluster-down                    leaves no process, mount, netns, bridge, iptables rule
#   make image-push REGISTRY=r.example.com/team TAG=1.2.3    push IMAGE as REGISTRY/fastapi-app:TAG
#   make chart-push REGISTRY=r.example.com/team TAG=1.2.3    helm push to oci://REGISTRY/charts
IMAGE ?= fastapi-app:dev
REGISTRY ?=
TAG ?= $(lastword $(subst :, ,$(IMAGE)))
CONTAINER_ENGINE ?= $(if $(shell docker info >/dev/null 2>&1 && echo y),docker,buildah)
LOCAL_REGISTRY := 127.0.0.1:$(or $(REGISTRY_PORT),15000)
CLUSTER_KUBECONFIG := $(or $(CLUSTER_DIR),/var/lib/fastapi-kit/cluster)/admin.kubeconfig
HELM ?= $(TOOLS)/bin/helm4
DEPLOY = KUBECONFIG=$(CLUSTER_KUBECONFIG) KUBECTL=$$(bash -c '. scripts/cluster/versions.sh; echo $$KIT_BIN/kubectl') \
	HELM=$(HELM) TARGET=local DRY_RUN=$(DRY_RUN) bash scripts/cluster/deploy.sh

.PHONY: cluster-build cluster-up cluster-down cluster-deploy cluster-metrics-server cluster-test \
        image-push chart-push

cluster-build: ## Build Kubernetes, etcd, CoreDNS, crictl, pause and metrics-server from Go modules (cached)
	bash scripts/cluster/build.sh all

cluster-up: ## Start the local single-node cluster (root); prints the kubeconfig path
	@bash scripts/tools/cluster-tools.sh
	bash scripts/cluster/up.sh

cluster-down: ## Stop the local cluster and remove everything it made on the host (root)
	bash scripts/cluster/down.sh

cluster-deploy: ## Build + push the image and chart to the local registry, install from oci://, test, load test
	@test -x $(HELM) || bash scripts/tools/helm.sh
	IMAGE=localhost/fastapi-app:$(TAG) BASE=local CONTAINER_ENGINE=buildah REGISTRY=$(LOCAL_REGISTRY) \
	  $(DEPLOY) image push chart-push
	CHART=oci://$(LOCAL_REGISTRY)/charts/fastapi-app REGISTRY=$(LOCAL_REGISTRY) TAG=$(TAG) \
	  VALUES=scripts/cluster/values-local.yaml $(DEPLOY) namespace install wait test loadtest

cluster-metrics-server: ## Add metrics-server to the running cluster (kubectl top, the chart's HPA)
	bash scripts/cluster/addons.sh metrics-server

cluster-test: ## Run only the cluster suite (brings the cluster up and down; KEEP_CLUSTER=1 keeps it)
	$(VENV)/bin/pytest tests/cluster -s

image-push: ## Push IMAGE to REGISTRY as REGISTRY/fastapi-app:TAG (docker, else buildah)
	@test -n "$(REGISTRY)" || { echo "set REGISTRY=host[:port][/path]" >&2; exit 2; }
	IMAGE=$(IMAGE) REGISTRY=$(REGISTRY) TAG=$(TAG) CONTAINER_ENGINE=$(CONTAINER_ENGINE) \
	  DRY_RUN=$(DRY_RUN) bash scripts/cluster/deploy.sh push

chart-push: ## helm package (appVersion TAG) + helm push to oci://REGISTRY/charts
	@test -n "$(REGISTRY)" || { echo "set REGISTRY=host[:port][/path]" >&2; exit 2; }
	@test -x $(HELM) || bash scripts/tools/helm.sh
	REGISTRY=$(REGISTRY) TAG=$(TAG) HELM=$(HELM) DRY_RUN=$(DRY_RUN) bash scripts/cluster/deploy.sh chart-push
