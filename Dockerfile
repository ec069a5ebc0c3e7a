# tenderhub runtime image: the CDC relay, the Faust workers and the CLI (migrate, doctor, verify).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.lock pyproject.toml README.md ./
COPY schema ./schema
COPY cdc ./cdc
COPY streams ./streams
COPY sinks ./sinks
COPY tenderhub ./tenderhub
# Runtime dependencies only, pinned by the lock file.
RUN pip install --no-cache-dir -c requirements.lock . \
 && useradd --system --uid 10001 --home-dir /app tenderhub

USER tenderhub
ENTRYPOINT ["tenderhub"]
CMD ["--help"]
