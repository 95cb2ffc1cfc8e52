#!/usr/bin/env bash
# `make run`: migrate, seed the demo, collect static files, then web + worker + beat under one
# supervisor (veto_cloud/supervise.py) that restarts whichever dies. DEBUG stays off unless
# VETO_DEBUG=1 is set.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR_DIR="${VETO_VAR_DIR:-var}"
mkdir -p "$VAR_DIR"

# Demo credentials: the environment wins; otherwise generated once and kept in var/demo.env
# (a local, git-ignored file) so every `make run` can print them again.
if [ ! -f "$VAR_DIR/demo.env" ]; then
  umask 077
  python - > "$VAR_DIR/demo.env" <<'PY'
import secrets
print(f"DEMO_PASSWORD={secrets.token_urlsafe(12)}")
print(f"DEMO_API_KEY=vk_demo_{secrets.token_urlsafe(32)}")
print(f"DEMO_APPROVER_API_KEY=vk_demo_alice_{secrets.token_urlsafe(32)}")
PY
fi
# demo.env files from before personal keys lack alice's key: add it once.
if ! grep -q '^DEMO_APPROVER_API_KEY=' "$VAR_DIR/demo.env"; then
  python -c 'import secrets; print(f"DEMO_APPROVER_API_KEY=vk_demo_alice_{secrets.token_urlsafe(32)}")' >> "$VAR_DIR/demo.env"
fi
# shellcheck disable=SC1091
. "$VAR_DIR/demo.env"
export VETO_DEMO_PASSWORD="${VETO_DEMO_PASSWORD:-$DEMO_PASSWORD}"
export VETO_DEMO_API_KEY="${VETO_DEMO_API_KEY:-$DEMO_API_KEY}"
export VETO_DEMO_APPROVER_API_KEY="${VETO_DEMO_APPROVER_API_KEY:-$DEMO_APPROVER_API_KEY}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-veto_cloud.settings.local}"

python manage.py migrate --noinput
python manage.py seed_demo
# DEBUG off serves what collectstatic gathered (as production does); with VETO_DEBUG=1 the app
# folders are served directly, but collecting costs a second and keeps both working.
python manage.py collectstatic --noinput -v0
DEBUG_PAGES=$(python -c "from veto_cloud.env import env_bool; print('ON' if env_bool('VETO_DEBUG', env_bool('DEBUG', False)) else 'off')")
# The banner names the database and Redis without their passwords.
without_password() { printf '%s' "$1" | sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#'; }
DATABASE_SHOWN=$(without_password "${DATABASE_URL:-SQLite in $VAR_DIR}")
REDIS_SHOWN=$(without_password "${REDIS_URL:-embedded (no Redis)}")

cat <<BANNER

  Veto Cloud is starting on http://127.0.0.1:${PORT}
    Dashboard:  http://127.0.0.1:${PORT}/dashboard/
    API docs:   http://127.0.0.1:${PORT}/api/docs/
    Logins:     admin, alice, bob, carol, dana   password: ${VETO_DEMO_PASSWORD}
    Policies:   http://127.0.0.1:${PORT}/dashboard/teams/demo/policies/  (alice writes, dana publishes)
    API key:    ${VETO_DEMO_API_KEY}  (the demo team's key: validate, rules; it cannot resolve approvals)
    Approver:   ${VETO_DEMO_APPROVER_API_KEY}  (alice's personal key: VetoAdmin.resolve_approval acts as alice)
    My keys:    http://127.0.0.1:${PORT}/dashboard/api-keys/
    Try it:     curl -s -X POST http://127.0.0.1:${PORT}/v1/tools/validate \\
                  -H "X-Veto-API-Key: ${VETO_DEMO_API_KEY}" \\
                  -d '{"tool_name":"run_data_export","arguments":{"include_pii":true}}'
  Database: ${DATABASE_SHOWN}   Broker/channels: ${REDIS_SHOWN}
  Debug pages: ${DEBUG_PAGES} (VETO_DEBUG=1 turns them on; they show tracebacks and settings)
  A process that dies is restarted (with back-off); Ctrl-C stops web, worker and beat together.

BANNER

exec python -m veto_cloud.supervise --procfile Procfile
