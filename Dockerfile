# The redkube operator image: python -m redkube.operator (see deploy/operator.yaml).
FROM python:3.11-slim
RUN useradd --uid 10001 --create-home redkube
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /src
USER 10001
ENTRYPOINT []
CMD ["python", "-m", "redkube.operator"]
