# Helm chart, plain manifests and the kind workflow (included by the top Makefile).
# Uses VENV / PY / TOOLS from the top Makefile; defaults here keep it usable alone.
VENV ?= .venv
PY ?= $(VENV)/bin/python
TOOLS ?= .tools
CHART_DIR := helm/fastapi-app
HELM3 ?= $(TOOLS)/bin/helm3
HELM4 ?= $(TOOLS)/bin/helm4
IMAGE ?= fastapi-app:dev
DRY_RUN ?= 0
PROMETHEUS ?= 0
KIND_ENV = DRY_RUN=$(DRY_RUN) IMAGE=$(IMAGE)

.PHONY: chart-tools chart-lint chart-docs chart-docs-check manifests chart-test chart-rules-test \
        kind-up kind-deploy kind-prometheus kind-loadtest kind-down kind-all

chart-tools: ## Install Helm 3, Helm 4 (.tools/bin/helm3, helm4) and checkov (.tools/checkov)
	bash scripts/tools/helm.sh
	bash scripts/tools/chart-tools.sh

chart-lint: ## helm lint --strict with Helm 3 and Helm 4 (default values and every feature on)
	@test -x $(HELM3) -a -x $(HELM4) || bash scripts/tools/helm.sh
	$(HELM3) lint --strict $(CHART_DIR)
	$(HELM4) lint --strict $(CHART_DIR)
	$(HELM3) lint --strict $(CHART_DIR) -f tests/chart/values/all-on.yaml
	$(HELM4) lint --strict $(CHART_DIR) -f tests/chart/values/all-on.yaml

chart-docs: ## Regenerate helm/fastapi-app/README.md from the values.yaml comments
	$(PY) scripts/chart_docs.py

chart-docs-check: ## Fail when the chart README is stale
	$(PY) scripts/chart_docs.py --check

manifests: ## Regenerate k8s/base and k8s/kind from helm template
	@test -x $(HELM4) || bash scripts/tools/helm.sh
	HELM=$(HELM4) $(PY) k8s/generate.py

chart-test: ## Run only the chart tests
	$(VENV)/bin/pytest tests/chart

chart-rules-test: ## promtool unit tests of the alert rules as the chart renders them per release
	@test -x $(HELM4) || bash scripts/tools/helm.sh
	@rm -rf .tools/rules-test
	HELM=$(HELM4) $(PY) observability/render_rules.py --out .tools/rules-test >/dev/null
	promtool check rules .tools/rules-test/rendered/*.yaml
	promtool test rules .tools/rules-test/*_test.yaml

kind-up: ## Create the kind cluster (DRY_RUN=1 prints the commands)
	$(KIND_ENV) bash scripts/kind.sh up

kind-deploy: ## Build the image, load it into kind, install the chart, wait, helm test
	$(KIND_ENV) bash scripts/kind.sh deploy

kind-prometheus: ## Install kube-prometheus-stack and enable ServiceMonitor/PrometheusRule/dashboard
	$(KIND_ENV) bash scripts/kind.sh prometheus

kind-loadtest: ## Port-forward the Service and run the Locust smoke profile
	$(KIND_ENV) bash scripts/kind.sh loadtest

kind-down: ## Delete the kind cluster
	$(KIND_ENV) bash scripts/kind.sh down

kind-all: ## kind-up, kind-deploy, (kind-prometheus when PROMETHEUS=1), kind-loadtest
	$(KIND_ENV) PROMETHEUS=$(PROMETHEUS) bash scripts/kind.sh all
