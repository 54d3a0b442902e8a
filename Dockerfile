# syntax=docker/dockerfile:1
# The perfserve images for the staging stack (docker-compose.yml) and deploy/:
#   docker build --target runtime  -t perfserve .            # the service (the default)
#   docker build --target loadtest -t perfserve-loadtest .   # Locust master and workers
# Every install takes the versions the test suite ran with (constraints.txt).

# The base, pinned by digest (the multi-platform index of this tag as the Docker Official
# Images record it: docker-library/repo-info, repos/python/remote/3.11.15-slim-bookworm.md).
# To move it, take the new tag's digest from that record or from your registry
# (`docker buildx imagetools inspect TAG`) and pass --build-arg PYTHON_IMAGE=TAG@sha256:...
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

# The project's sources, once, for the stages that install it.
FROM ${PYTHON_IMAGE} AS source
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY perfserve perfserve
COPY perfserve_common perfserve_common
COPY service service
COPY loadtests loadtests

# Build stage: the serving install for the runtime, and a second virtualenv with the
# model-building extra that builds the store (train, convert, quantize, score), so that
# every replica serves the same store and starts without training.
FROM source AS build
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --constraint constraints.txt .
RUN python -m venv /opt/tools \
    && /opt/tools/bin/pip install --constraint constraints.txt '.[build]'
ENV PATH=/opt/tools/bin:$PATH
WORKDIR /opt/perfserve
RUN perfserve build

# The load tools' virtualenv, for the Locust image.
FROM source AS loadtest-build
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --constraint constraints.txt '.[loadtest]'
WORKDIR /opt/perfserve
# Where the compose file's and deploy/'s Locust commands look for it.
COPY loadtests/locustfile.py loadtests/

# Locust master and workers (docker-compose.yml, deploy/loadtest).
FROM ${PYTHON_IMAGE} AS loadtest
RUN useradd --system --user-group --uid 10001 --no-create-home --home-dir /opt/perfserve perfserve
COPY --from=loadtest-build /opt/venv /opt/venv
COPY --from=loadtest-build /opt/perfserve /opt/perfserve
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/perfserve
USER perfserve
EXPOSE 8089 5557 9465
CMD ["locust", "-f", "loadtests/locustfile.py"]

# Runtime stage: the serving install and the store; no build tools, no load tools.
FROM ${PYTHON_IMAGE} AS runtime
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
