# One image for all four services; compose picks the service with `command`.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY generators ./generators
RUN pip install . \
 && useradd --create-home --uid 10001 emogo \
 && mkdir -p /data/logs \
 && chown -R emogo /data

USER emogo
# Containers listen on all interfaces of their own network; compose publishes only the gateway.
ENV EMOGO_HOST=0.0.0.0 \
    EMOGO_DATA_DIR=/data
CMD ["python", "-m", "services.gateway"]
