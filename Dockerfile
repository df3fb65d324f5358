# crm-stream engine image. Used by docker-compose.yml (services `engine`, `api` and `generator`).
#   docker build -t crm-stream .
#   docker run --rm crm-stream settings          # any crm-stream command; default: run
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs (tests, caches and local outputs stay out: see .dockerignore).
COPY pyproject.toml README.md ./
COPY config ./config
COPY connectors ./connectors
COPY flows ./flows
COPY models ./models
COPY operators ./operators
COPY api ./api
RUN pip install . \
    && rm -rf /app/build /app/*.egg-info

# Non-root user; the recovery directory is a volume it owns (a named volume mounted there
# starts with this ownership).
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid crm --home-dir /home/crm --create-home crm \
    && mkdir -p /var/lib/crm-stream/recovery \
    && chown -R crm:crm /var/lib/crm-stream

ENV CRM_RECOVERY_DIR=/var/lib/crm-stream/recovery \
    CRM_METRICS_PORT=9464

USER crm
WORKDIR /home/crm
VOLUME ["/var/lib/crm-stream/recovery"]

# Prometheus metrics (process i of a cluster serves CRM_METRICS_PORT + i).
EXPOSE 9464
# `crm-stream serve` (the API and the agent's page; CRM_API__PORT).
EXPOSE 8080

ENTRYPOINT ["crm-stream"]
CMD ["run"]
