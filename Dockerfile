# One image for every symphainy component; the command picks it (runtime, experience, up, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY intents intents
COPY bus bus
COPY runtime_worker runtime_worker
COPY experience experience
COPY symphainy symphainy
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /data symphainy \
    && mkdir -p /data && chown symphainy /data

USER symphainy
WORKDIR /data
ENTRYPOINT ["symphainy"]
CMD ["--help"]
