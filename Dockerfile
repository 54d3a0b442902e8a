# syntax=docker/dockerfile:1
# The perfserve image for the staging stack (docker-compose.yml): the service with its
# model store built in, and the load tools for the stack's load generators.

ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm

# Build stage: install the project into a virtualenv and build the model store.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY perfserve perfserve
COPY common common
COPY service service
COPY loadtests loadtests
COPY benchmarks benchmarks
COPY staging staging
RUN pip install .
WORKDIR /opt/perfserve
# The README's command: train, convert, quantize and score every variant once, here,
# so that every replica serves the same store and starts without training.
RUN perfserve build
# Where the compose file's Locust commands look for it (the modules it imports are
# installed with the project).
COPY loadtests/locustfile.py loadtests/

# Runtime stage: the virtualenv, the store and the locustfile; no build caches.
FROM ${PYTHON_IMAGE}
RUN useradd --system --user-group --uid 10001 --no-create-home --home-dir /opt/perfserve perfserve \
    && install -d -o perfserve -g perfserve /var/lib/perfserve/split
# ^ where the compose file mounts the volume that holds the replicas' shared traffic split;
# a new named volume takes this directory's owner, so the service can write the split.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/perfserve /opt/perfserve
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PERFSERVE_HOST=0.0.0.0 \
    PERFSERVE_PORT=8000
WORKDIR /opt/perfserve
USER perfserve
EXPOSE 8000
# Healthy once every variant is loaded and warmed (/readyz), not merely listening.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['PERFSERVE_PORT'], timeout=2)"]
CMD ["perfserve", "serve"]
