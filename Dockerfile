# realtime: a WebSocket-native realtime server for AI chat agents.
#   docker build -t realtime . && docker run -p 8000:8000 -v realtime-data:/data realtime
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REALTIME_HOST=0.0.0.0 \
    REALTIME_PORT=8000 \
    REALTIME_DATABASE_URL=sqlite:////data/realtime.db \
    REALTIME_DEMO_DOCS=/app/docs:/app/README.md

WORKDIR /app
COPY pyproject.toml README.md ./
COPY realtime ./realtime
COPY compat_sse ./compat_sse
COPY docs ./docs
RUN pip install --no-cache-dir . && mkdir -p /data && useradd --system realtime \
    && chown realtime /data
USER realtime
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health'); sys.exit(0)"
CMD ["realtime", "serve"]
