# The interlock demo app (`interlock demo`), as run by docker-compose.yml.
# Build: docker build -t interlock-demo .
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY middleware ./middleware
RUN pip install '.[redis,postgres,mysql,demo,otlp]' \
    && useradd --system --uid 10001 --no-create-home interlock

USER interlock
EXPOSE 8000

# Logs are JSON lines on stdout (collected by Filebeat in the compose stack); spans go over
# OTLP when OTEL_TRACES_EXPORTER=otlp (docker-compose.yml sets it, docs/tracing.md).
CMD ["interlock", "demo", "--host", "0.0.0.0", "--port", "8000", "--redis", "redis://redis:6379/0"]
