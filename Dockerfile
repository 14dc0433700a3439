# The redkube operator image: python -m redkube.operator (see deploy/operator.yaml and the chart).
# `make image` builds it with docker, podman or buildah; BASE may name another Python >= 3.11
# image (the test bed builds one from Debian's packages).
ARG BASE=python:3.11-slim
FROM ${BASE}
RUN useradd --uid 10001 --create-home redkube
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A virtualenv: the same on the official Python image and on a Debian one (PEP 668). Only the
# operator's dependencies: no server wheel (`redkube[server]` is for `redkube up`).
RUN python3 -m venv /opt/redkube \
    && /opt/redkube/bin/pip install --no-cache-dir . \
    && rm -rf /src
ENV PATH=/opt/redkube/bin:$PATH
WORKDIR /
USER 10001
ENTRYPOINT []
CMD ["python", "-m", "redkube.operator"]
