# syntax=docker/dockerfile:1
# Images for the production stack in docker-compose.yml, installed from the locks (hashes) under
# requirements/: an image built next month holds the versions CI tested.
#   web / worker (CPU):   docker build --target app -t tandem-app .
#   gpu-worker (training): docker build --target training -t tandem-training .
# vLLM runs from its own image (it pins its own torch and transformers).

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 1000 tandem
WORKDIR /app
COPY requirements/bootstrap.txt ./requirements/
RUN pip install --require-hashes -r requirements/bootstrap.txt

FROM base AS app
COPY requirements/web.txt ./requirements/
RUN pip install --require-hashes -r requirements/web.txt
# Every package of the project is in the tree copied here; the project installs without its
# dependencies (they are the lock's) and without build isolation (nothing unpinned is fetched).
COPY . .
RUN pip install --no-deps --no-build-isolation . \
    && DJANGO_SETTINGS_MODULE=config.settings.local SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R tandem /app/var
USER tandem
ENV DJANGO_SETTINGS_MODULE=config.settings.production
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "-c", "config/gunicorn.py", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]

FROM app AS training
USER root
# PyPI's CUDA build of torch and everything else at training.txt's versions (make lock).
COPY requirements/training-gpu.txt ./requirements/
RUN pip install --require-hashes -r requirements/training-gpu.txt
USER tandem
CMD ["celery", "-A", "config", "worker", "-Q", "gpu", "--concurrency", "1", "--loglevel", "INFO"]
