# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=veto_cloud.settings.base \
    VETO_VAR_DIR=/app/var \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
RUN useradd --create-home --uid 10001 veto

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p veto_cloud common tenancy policies approvals audit \
 && touch veto_cloud/__init__.py common/__init__.py tenancy/__init__.py policies/__init__.py approvals/__init__.py audit/__init__.py \
 && pip install -e . \
 && rm -rf veto_cloud common tenancy policies approvals audit

COPY . .
# Editable install: settings find templates/ and static/ next to the code in /app.
# /app/keys is where docker-compose.yml mounts the audit-key volume: a new volume copies this
# directory's owner and mode, so the veto user can create the signing key there.
RUN pip install --no-deps -e . \
 && SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && mkdir -p /app/var /app/keys && chown -R veto:veto /app/var /app/keys && chmod 0700 /app/keys

USER veto
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
CMD ["python", "-m", "veto_cloud.serve"]
