# syntax=docker/dockerfile:1
# Images for the production stack in docker-compose.yml.
#   web / worker (CPU):   docker build --target app -t tandem-app .
#   gpu-worker (training): docker build --target training -t tandem-training .
# vLLM runs from its own image (it pins its own torch and transformers).

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 1000 tandem
WORKDIR /app

FROM base AS app
COPY pyproject.toml ./
COPY config ./config
COPY accounts ./accounts
COPY annotation ./annotation
COPY modelserving ./modelserving
COPY training ./training
RUN pip install ".[web]"
COPY . .
RUN DJANGO_SETTINGS_MODULE=config.settings.local SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R tandem /app/var
USER tandem
ENV DJANGO_SETTINGS_MODULE=config.settings.production
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "-c", "config/gunicorn.py", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]

FROM app AS training
USER root
RUN pip install ".[training]"
USER tandem
CMD ["celery", "-A", "config", "worker", "-Q", "gpu", "--concurrency", "1", "--loglevel", "INFO"]
