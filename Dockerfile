FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Dependencies first, from the hash-checked runtime lock (`make lock`), so this layer is rebuilt
# only when the lock changes; then the project itself, adding no dependency of its own.
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip install --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md LICENSE celeryproject.py ./
COPY syndicator ./syndicator
COPY tasks ./tasks
COPY templates ./templates
RUN pip install --no-deps .
# The image runs from the source tree so templates/ resolves beside the code.
ENV PYTHONPATH=/app
USER nobody
EXPOSE 8000
CMD ["gunicorn", "syndicator.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
