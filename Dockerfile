# vmbot as a container: `vmbot serve` (HTTP mode, or Socket Mode when SLACK_APP_TOKEN is set) on $PORT.
# Built for Cloud Run (deploy/cloudrun.yaml) but nothing in it is Cloud Run-specific. Build from the repo root:
#   docker build -t vmbot:0.2.0 .

# Stage 1 builds vmbot's wheel, so the final image holds the installed package and no source tree or
# build tooling. Slim Debian rather than Alpine: psycopg[binary] and grpcio ship manylinux (glibc) wheels,
# which Alpine's musl cannot use, so Alpine would compile them from source.
FROM python:3.12-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim

# Logs straight to stdout (Cloud Logging reads them line by line); no pip cache or version check in layers.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pyproject.toml pins every runtime dependency exactly (the same pins as requirements.txt), so installing
# the wheel gives the tested versions. The wheel carries the migrations and the VMs' startup script.
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/vmbot-*.whl && rm -rf /tmp/wheels

# Not root: a compromised process should not own the image. A numeric UID lets Kubernetes' runAsNonRoot
# verify it. The home directory is the working directory, so a local SQLite file (DATABASE_URL's default,
# fine for trying the image; production uses Cloud SQL) lands somewhere writable.
RUN useradd --create-home --uid 10001 --user-group vmbot
USER 10001:10001
WORKDIR /home/vmbot

# Cloud Run sends traffic to $PORT (8080 unless told otherwise) and sets it itself; the bot reads PORT.
ENV PORT=8080
EXPOSE 8080

# The slim image has no curl: ask /healthz with the Python that is there. urlopen raises on a refused
# connection or a non-2xx answer, which fails the check. PORT is read when the check runs, so a container
# started with another PORT is still checked where it listens.
# (Cloud Run ignores HEALTHCHECK; deploy/cloudrun.yaml gives it the same probe. Docker and Compose use this.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"]

# Exec form: vmbot is PID 1 and gets the platform's SIGTERM itself, so it stops the scheduler and the
# job runner in order instead of being killed mid-operation by a wrapping shell.
CMD ["vmbot", "serve"]
