"""Test settings: the same env-driven base, with test-only speedups.

Tests that need real timing (the live ASGI server, a real Celery worker) start
those processes with the base settings; eager Celery exists only here.
"""

import os

os.environ.setdefault("DEBUG", "true")

from veto_cloud.settings.base import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
API_KEY_CACHE_SECONDS = 0.0

# The test runner creates and drops the test database; a pool would hold connections open
# across that. Connection pooling is exercised by the live server, which uses the base settings.
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)  # noqa: F405
