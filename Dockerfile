# The release worker (also the migrate and codec-server services of docker-compose.yml).
# Slim, non-root; every Python dependency pinned by version and hash in requirements.lock
# (`make lock` writes it from pyproject.toml; tests/test_deployment.py checks the two agree).

# The project as a wheel, built apart so that no source tree or build tool reaches the image.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mpr ./mpr
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY starters ./starters
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARTIFACT_DIR=/var/lib/mpr/artifacts \
    BUILD_SOURCE_ROOTS=/srv/mini-programs:/app/samples \
    WORKER_HEALTH_FILE=/tmp/mpr-worker.health

RUN useradd --create-home --uid 10001 mpr \
    && mkdir -p /var/lib/mpr/artifacts /srv/mini-programs \
    && chown -R mpr:mpr /var/lib/mpr

# Dependencies in a layer of their own: a code change does not reinstall them.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock

# --no-deps: nothing beyond the lock. pip writes the bytecode, which the workflow sandbox
# loads for every workflow it runs instead of compiling the module again.
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels && pip check

# The sample mini program, so that a first release needs no upload (docs/production.md).
WORKDIR /app
COPY samples ./samples

USER mpr
# Live while the worker's event loop runs (workers/health.py). The image's other services
# (migrate, codec-server) are not workers: compose turns the check off for them.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "workers.health"]
CMD ["python", "-m", "workers.main"]
