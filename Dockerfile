# Production image for the FastAPI service: `gunicorn -c gunicorn.conf.py` as uid 10001.
#
#   make image                       # docker build when an engine answers, else buildah
#   docker build -t fastapi-app:dev .
#   docker build --build-arg BASE_IMAGE=python:3.12-slim@sha256:<digest> -t fastapi-app:dev .
#
# Runs with a read-only root filesystem. The only paths that must be writable are
#   /tmp                            gunicorn's worker heartbeat files, Python temp files
#   /var/lib/fastapi-app/metrics    PROMETHEUS_MULTIPROC_DIR (per-worker metric files)
# (the Helm chart mounts an emptyDir on each).
#
# Any base with a `python3` >= 3.11 on PATH works (python:3.12-slim by default; the tests
# use a debootstrapped Debian bookworm): the virtual environment is made from the base's
# own python3, so builder and final stage must use the same BASE_IMAGE.
ARG BASE_IMAGE=python:3.12-slim

# --------------------------------------------------------------------------- builder
FROM ${BASE_IMAGE} AS builder

# PIP_CERT / SSL_CERT_FILE: pip and uv trust the system CA bundle (a build behind a
# TLS-intercepting proxy mounts its bundle there). Builder stage only.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv

WORKDIR /src

# Fail fast, before any download, when the lock file is missing.
# (uv.lock* so that a missing lock reaches the check below instead of a COPY error.)
COPY pyproject.toml uv.lock* ./
RUN if [ ! -f uv.lock ]; then \
      echo "ERROR: uv.lock is missing from the build context: run 'uv lock' and commit uv.lock" >&2; \
      exit 1; \
    fi

# uv itself comes from PyPI, into a throw-away environment the final stage never sees.
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --quiet uv==0.13.8

# A lock that no longer matches pyproject.toml (a dependency added, removed or re-pinned
# without `uv lock`) fails here in well under a second, offline, before any download.
# --locked then installs exactly the lock; the environment is created from the base's
# own python3 and holds no pip.
RUN if ! /opt/uv/bin/uv lock --check --offline; then \
      echo "ERROR: uv.lock does not match pyproject.toml: run 'uv lock' and commit uv.lock" >&2; \
      exit 1; \
    fi; \
    if ! /opt/uv/bin/uv sync --locked --no-dev --python "$(command -v python3)"; then \
      echo "ERROR: installing the locked dependencies failed (see uv's message above)" >&2; \
      exit 1; \
    fi

# ----------------------------------------------------------------------------- final
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="fastapi-app" \
      org.opencontainers.image.description="Hardened FastAPI service: gunicorn + uvicorn workers, Prometheus metrics, OpenTelemetry" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/fastapi-app/metrics \
    APP_PORT=8000 \
    APP_METRICS_PORT=9000

# An unprivileged user (no home, no shell) and the metrics directory it may write to.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
       --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/fastapi-app /var/lib/fastapi-app/metrics

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py ./
COPY app ./app

USER 10001:10001
EXPOSE 8000 9000
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
