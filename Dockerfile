# The axmon image: the CLI, the worker and the sink. Used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY processor ./processor
RUN pip install --no-cache-dir .
ENTRYPOINT ["axmon"]
CMD ["--help"]
