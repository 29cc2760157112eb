FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md celeryproject.py ./
COPY syndicator ./syndicator
COPY tasks ./tasks
COPY templates ./templates
RUN pip install .
# The image runs from the source tree so templates/ resolves beside the code.
ENV PYTHONPATH=/app
USER nobody
EXPOSE 8000
CMD ["gunicorn", "syndicator.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
