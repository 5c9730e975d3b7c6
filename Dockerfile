# A slim image of tanma-sync: `docker build -t tanma-sync .`; runs the daemon by default.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sync ./sync
COPY migrations ./migrations
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 tanma
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
USER tanma
WORKDIR /home/tanma
# /healthz and /metrics of `tanma-sync daemon` (SYNC_HTTP_LISTEN=0.0.0.0:9477 in a container).
EXPOSE 9477
STOPSIGNAL SIGTERM
ENTRYPOINT ["tanma-sync"]
CMD ["daemon"]
