# Container image for openai-cost-pusher.
#
#   docker build -t openai-cost-pusher:0.1.0 .
#   docker run --rm openai-cost-pusher:0.1.0 --demo --dry-run --once
#
# The base image is a build argument so that it can come from a mirror or a
# locally built image: --build-arg PYTHON_IMAGE=registry.example.com/python:3.11-slim
# It must be a Debian-based CPython 3.11+ image with python and pip on PATH,
# the same in both stages (the virtualenv links to the base's interpreter).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Stage 1: build the wheel from pyproject.toml and install it, with its
# runtime dependencies only (no [test] extra), into a virtualenv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY openai_cost_pusher ./openai_cost_pusher
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/openai-cost-pusher \
    && /opt/openai-cost-pusher/bin/pip install /wheels/openai_cost_pusher-*.whl \
    && /opt/openai-cost-pusher/bin/pip uninstall --yes pip setuptools

# Stage 2: the runtime, with the virtualenv and nothing else added.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="openai-cost-pusher" \
      org.opencontainers.image.description="Push exact daily OpenAI organization costs and usage to VictoriaMetrics" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/openai-cost-pusher/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/openai-cost-pusher /opt/openai-cost-pusher
# A numeric non-root user, so that Kubernetes can check runAsNonRoot. The
# pusher writes no files; it runs with a read-only root file system.
USER 10001:10001
# Health listener when LISTEN=0.0.0.0:9108 is set (off by default).
EXPOSE 9108
ENTRYPOINT ["openai-cost-pusher"]
