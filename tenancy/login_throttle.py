"""Throttled logins (the dashboard's login page and the admin site), with django-axes.

Why: nothing limited password guessing (50 wrong passwords in 19 s, then the right one logged
in). Axes records failed logins in the database and refuses an attempt while any of these
holds, for ``LOGIN_LOCKOUT_SECONDS`` after the last failure:

* ``LOGIN_FAILURE_LIMIT`` failures for one username from one address (a guesser);
* ``LOGIN_FAILURES_PER_ADDRESS`` failures from one address, any usernames (a sprayer);
* ``LOGIN_FAILURES_PER_ACCOUNT`` failures for one username, any addresses (a distributed
  guesser). Anyone can so lock an account out for a while: it is set well above the others,
  and an admin can lift it (``manage.py axes_reset_username NAME``, or delete the attempt in the
  admin's "Access attempts").

A refused attempt is answered by the login page itself, status 429, with a message saying why
and for how long; the password is not even checked. Lockouts are logged once as
``auth.lockout kind=login``. The address is the ASGI client address (uvicorn's
``--proxy-headers`` takes ``X-Forwarded-For`` only from ``FORWARDED_ALLOW_IPS``).

Axes holds one failure limit; ``LoginAttemptsHandler`` gives each lockout parameter its own by
scaling each group's count to that one limit.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

logger = logging.getLogger(__name__)


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' check before the password is: refuses while locked out. A call without a request
    (``authenticate()`` from a management command or a shell) has no address to count and is
    not throttled; every login over HTTP has one."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        super().authenticate(request, username=username, password=password, **kwargs)
        return None


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_TIME``: how long a lockout lasts after the last failure."""
    return timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)


def _group_limits(base_limit: int) -> tuple[int, ...]:
    # In the order of AXES_LOCKOUT_PARAMETERS: (username, address), address, username.
    return (base_limit, settings.LOGIN_FAILURES_PER_ADDRESS, settings.LOGIN_FAILURES_PER_ACCOUNT)


class LoginAttemptsHandler(AxesDatabaseHandler):
    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """The failures Axes compares with its one limit: each parameter group's count scaled
        so that it reaches that limit exactly when the group reaches its own."""
        limit = get_failure_limit(request, credentials)
        scaled = [0]
        for attempts, group_limit in zip(
            self.get_user_attempts(request, credentials), _group_limits(limit), strict=True
        ):
            failures = attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            scaled.append(failures * limit // group_limit)
        return max(scaled)

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
    ) -> None:
        already = bool(getattr(request, "axes_locked_out", False))
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is not None and not already and getattr(request, "axes_locked_out", False):
            logger.warning(
                "auth.lockout kind=login username=%s address=%s path=%s lockout_s=%s",
                credentials.get("username", ""),
                getattr(request, "axes_ip_address", ""),
                getattr(request, "axes_path_info", ""),
                settings.LOGIN_LOCKOUT_SECONDS,
            )


def lockout_response(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the login page again, saying why it refuses and for how long.
    (Axes' async middleware passes its arguments in another order: none are needed here.)"""
    minutes = max(1, math.ceil(settings.LOGIN_LOCKOUT_SECONDS / 60))
    response = render(
        request,
        "registration/login.html",
        {"form": AuthenticationForm(request), "locked_out": True, "lockout_minutes": minutes},
        status=429,
    )
    response["Retry-After"] = str(math.ceil(settings.LOGIN_LOCKOUT_SECONDS))
    return response
