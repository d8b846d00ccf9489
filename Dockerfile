# syntax=docker/dockerfile:1
#
# One image for every kubegrid process; the pod spec picks the command:
#
#   operator   kopf run --standalone --all-namespaces -m kubegrid.operator.handlers
#              (the Helm chart adds --liveness, --namespace or --peering)
#   shard      kubegrid run-shard /etc/kubegrid/gridsearch.yaml
#              (a Job pod; its index comes from JOB_COMPLETION_INDEX)
#   reducer    kubegrid reduce /etc/kubegrid/gridsearch.yaml
#
# There is deliberately no ENTRYPOINT, so a container's `command` is the whole
# argv. To add estimators (xgboost, lightgbm), build on this image:
#
#   FROM <registry>/kubegrid:<version>
#   USER root
#   RUN pip install --no-cache-dir xgboost==<version>
#   USER 65532:65532
#
# and name that image in the GridSearch's spec.image (docs/cluster.md).

# Python matches the one the test suite runs on.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- build: resolve and install into a virtualenv ----------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# The venv is what the final stage copies; nothing else of this stage survives.
RUN python -m venv /opt/kubegrid
ENV PATH=/opt/kubegrid/bin:$PATH

# An old bundled pip can backtrack into sdists that need build tools.
RUN pip install --upgrade pip

WORKDIR /src
COPY pyproject.toml README.md ./
COPY runner/ runner/
COPY operator/ operator/
# pyproject.toml pins the data stack (scikit-learn, numpy, scipy, pandas,
# pyarrow, joblib, threadpoolctl, matplotlib), boto3, kopf and kubernetes to
# the versions the tests run with; a regular (non-editable) install.
RUN pip install . && pip check

# --- final: the runtime only -------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="kubegrid" \
      org.opencontainers.image.description="scikit-learn grid and random search on Kubernetes: operator, shard runner and reducer" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /opt/kubegrid /opt/kubegrid

# HOME and the matplotlib cache point at /tmp: the pods run with a read-only
# root filesystem and an emptyDir mounted there.
ENV PATH=/opt/kubegrid/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib

# 65532: the conventional "nonroot" id; the chart's securityContext uses it.
USER 65532:65532
WORKDIR /tmp

CMD ["kubegrid", "--help"]
