# syntax=docker/dockerfile:1
# One image for the model service (`driftkeeper serve`), the retraining Job (`driftkeeper
# retrain`) and the operator (`driftkeeper operator`): different commands, same install.
# Models are not baked in: they live on a volume (an init container trains the first one),
# so a retrain never needs a rebuild. The diamonds table ships inside the package.
#
# Stage 1 builds wheels for Driftkeeper and every dependency; stage 2 installs only those
# wheels (no index, no compiler) and runs as a numeric non-root user. The root filesystem
# may be read-only: everything written goes to /models (a volume) and /tmp (an emptyDir).
# tests/integration/test_install.py runs these same two install steps in a fresh venv, and
# scripts/build-images builds this file with buildah on a base made by debootstrap (BASE:
# any image with python3.11 and pip on PATH in /usr/local, as the official one has).

ARG BASE=python:3.11-slim
FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY service ./service
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[kubernetes]'

FROM ${BASE}
# The wheels are mounted for this step only: they never become a layer of the image.
# Versions are those of the wheels stage 1 built (--no-index installs nothing else).
# /models and /policy belong to the runtime user, so that volumes mounted there (a compose
# named volume takes the directory's owner) are writable without root.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels 'driftkeeper[kubernetes]' \
    && install -d -o 10001 -g 10001 /models /policy
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    HOME=/tmp \
    DRIFTKEEPER_MODEL_DIR=/models \
    DRIFTKEEPER_STATE_DIR=/tmp/driftkeeper \
    DRIFTKEEPER_HOST=0.0.0.0 \
    DRIFTKEEPER_PORT=8080
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["driftkeeper"]
CMD ["serve"]
