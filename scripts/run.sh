#!/usr/bin/env bash
# `make run`: migrate, seed the demo, then web + worker + beat in one foreground process group.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var

# Demo credentials: the environment wins; otherwise generated once and kept in var/demo.env
# (a local, git-ignored file) so every `make run` can print them again.
if [ ! -f var/demo.env ]; then
  umask 077
  python - > var/demo.env <<'PY'
import secrets
print(f"DEMO_PASSWORD={secrets.token_urlsafe(12)}")
print(f"DEMO_API_KEY=vk_demo_{secrets.token_urlsafe(32)}")
PY
fi
# shellcheck disable=SC1091
. var/demo.env
export VETO_DEMO_PASSWORD="${VETO_DEMO_PASSWORD:-$DEMO_PASSWORD}"
export VETO_DEMO_API_KEY="${VETO_DEMO_API_KEY:-$DEMO_API_KEY}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-veto_cloud.settings.local}"

python manage.py migrate --noinput
python manage.py seed_demo

cat <<BANNER

  Veto Cloud is starting on http://127.0.0.1:${PORT}
    Dashboard:  http://127.0.0.1:${PORT}/dashboard/
    API docs:   http://127.0.0.1:${PORT}/api/docs/
    Logins:     admin, alice, bob, carol, dana   password: ${VETO_DEMO_PASSWORD}
    Policies:   http://127.0.0.1:${PORT}/dashboard/teams/demo/policies/  (alice writes, dana publishes)
    API key:    ${VETO_DEMO_API_KEY}
    Try it:     curl -s -X POST http://127.0.0.1:${PORT}/v1/tools/validate \\
                  -H "X-Veto-API-Key: ${VETO_DEMO_API_KEY}" \\
                  -d '{"tool_name":"run_data_export","arguments":{"include_pii":true}}'
  Database: ${DATABASE_URL:-SQLite in ./var}   Broker/channels: ${REDIS_URL:-embedded (no Redis)}
  Ctrl-C stops web, worker and beat together.

BANNER

exec honcho start -f Procfile -p "${PORT}"
