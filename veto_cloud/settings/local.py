"""Developer defaults for `make run`: DEBUG on unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "true")

from veto_cloud.settings.base import *  # noqa: E402,F403
