# Locust load tests, capacity (step load) and the alert-rule unit tests.
# Uses VENV from the top Makefile; defaults here keep it usable alone.
VENV ?= .venv
# HOST: base URL of the service (any: local, port-forward, Ingress). PROFILE: a file in
# loadtests/profiles (smoke | kind | baseline) or a path to one. LOCUST_ARGS: passed through
# (e.g. "--min-rps 500 -t 2m --processes -1"). REPORT=DIR/NAME writes NAME_*.csv,
# NAME.html and NAME.json under DIR.
HOST ?= http://127.0.0.1:8000
PROFILE ?= smoke
LOCUST_ARGS ?=
REPORT ?=
LOCUST_CMD = $(VENV)/bin/locust -f loadtests/locustfile.py --headless --host "$(HOST)" \
	--profile "$(PROFILE)" $(if $(REPORT),--csv "$(REPORT)" --html "$(REPORT).html" --json-file "$(REPORT)")

.PHONY: loadtest capacity rules-test dashboard

define check_host
	@case "$(HOST)" in http://*|https://*) ;; *) echo "HOST must be a base URL such as http://127.0.0.1:8000 (got '$(HOST)')" >&2; exit 2;; esac
endef

loadtest: install ## Locust against HOST with PROFILE's targets; exit 1 when a target is missed
	$(check_host)
	$(LOCUST_CMD) $(LOCUST_ARGS)

capacity: install ## Step load against HOST until p99 or failures miss PROFILE's target; prints the knee
	$(check_host)
	$(LOCUST_CMD) --step-load --only-summary $(LOCUST_ARGS)

rules-test: ## promtool check + unit tests of helm/fastapi-app/files/prometheus-rules.yaml
	promtool check rules helm/fastapi-app/files/prometheus-rules.yaml
	promtool test rules observability/tests/*.yaml
	$(MAKE) chart-rules-test

dashboard: install ## Regenerate helm/fastapi-app/files/grafana-dashboard.json
	$(VENV)/bin/python observability/build_dashboard.py
