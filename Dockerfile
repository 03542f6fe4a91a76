# One image for all four services; compose picks the service with `command`.
# Python 3.11: the version requirements.lock was resolved for (make lock).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The locked, hash-checked dependencies first (a layer that changes only with the lock).
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY services ./services
COPY generators ./generators
RUN pip install --no-deps . \
 && useradd --create-home --uid 10001 emogo \
 && mkdir -p /data/logs /data/tmp \
 && chown -R emogo /data

USER emogo
# Containers listen on all interfaces of their own network; compose publishes only the gateway.
ENV EMOGO_HOST=0.0.0.0 \
    EMOGO_DATA_DIR=/data
CMD ["python", "-m", "services.gateway"]
