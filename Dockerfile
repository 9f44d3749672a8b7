# The release worker. Slim, non-root, dependencies pinned by pyproject.toml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ARTIFACT_DIR=/var/lib/mpr/artifacts

RUN useradd --create-home --uid 10001 mpr \
    && mkdir -p /var/lib/mpr/artifacts \
    && chown -R mpr:mpr /var/lib/mpr

WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY starters ./starters
COPY catalog ./catalog
COPY infra ./infra
COPY cli ./cli
COPY samples ./samples
RUN pip install .

USER mpr
CMD ["python", "-m", "workers.main"]
