# iris-service under gunicorn, with the default Iris model trained at build time.
#   docker build -t iris-service:0.1.0 .
#   docker run --rm -p 8080:8080 iris-service:0.1.0
# gRPC (the Open Inference Protocol) beside HTTP, in every worker:
#   docker run --rm -p 8080:8080 -p 8081:8081 -e IRIS_SERVICE_GRPC_PORT=8081 iris-service:0.1.0
FROM python:3.11-slim

# No .pyc files (the root filesystem is read-only in Kubernetes), unbuffered logs,
# and no pip cache left in the layers.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin iris

# Before the sources, so editing the package does not reinstall the server.
RUN pip install gunicorn

WORKDIR /src
COPY . .
# With the grpc extra, so IRIS_SERVICE_GRPC_PORT turns gRPC on without another image.
RUN pip install .[grpc]

WORKDIR /app
COPY wsgi.py gunicorn.conf.py ./
# Trained as root: the service user can read the model but not replace it.
RUN iris-service train --out models/iris/model.joblib

# After the build steps: PROMETHEUS_MULTIPROC_DIR puts prometheus-client in
# multiprocess mode, which the training step must not be in.
ENV IRIS_SERVICE_ENV=production \
    IRIS_SERVICE_MODEL_PATH=/app/models/iris/model.joblib \
    GUNICORN_BIND=0.0.0.0:8080 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/iris-metrics

USER 10001
# HTTP, and gRPC when IRIS_SERVICE_GRPC_PORT=8081 is set.
EXPOSE 8080 8081

# slim has no curl; urlopen raises (exit 1) on a refused connection or any non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/live', timeout=4)"]

# gunicorn, not granian (iris-service serve's default): our gunicorn worker receives each
# request whole before a thread serves it, so clients that hold back a body cannot take the
# threads, and it passed every row of tests/test_server_matrix.py; granian cannot bound a body
# (its issue #728). `iris-service serve --server granian --workers 2` also runs in this image.
# Exec form: gunicorn is PID 1 and gets SIGTERM directly, for a graceful stop.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
