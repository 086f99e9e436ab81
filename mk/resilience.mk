# Resilience and security suite (issue 8): drain behind HAProxy, worker SIGKILL, overload,
# hostile clients, OpenAPI fuzzing, log injection, recycling soak, bad configuration.
# `make test` runs it with everything else; this target runs just this suite, printing the
# measured figures (FIGURE lines). `RESILIENCE_ARGS='-m "not slow"'` skips the slow ones.
VENV ?= .venv
RESILIENCE_ARGS ?=

.PHONY: test-resilience

test-resilience: tools ## Run only the resilience suite (about 4 minutes on 2 cores)
	$(VENV)/bin/pytest tests/resilience -s $(RESILIENCE_ARGS)
