"""Developer defaults for `make run` and `manage.py` on a laptop: the base settings, DEBUG off.

DEBUG is opt-in (``VETO_DEBUG=1``). Without a SECRET_KEY in the environment, one is generated
once into the var directory (0600) and reused, so sessions survive restarts and no well-known
key ever signs anything.
"""

import os
import secrets
from pathlib import Path


def _local_secret_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f"{path.name}.{os.getpid()}.new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(50))
    try:
        # Web, worker and beat start together: link() publishes the whole file or fails if one
        # is there already, so every process ends up with the first one's key, never a half one.
        os.link(staged, path)
    except FileExistsError:
        pass
    finally:
        staged.unlink()
    return path.read_text().strip()


if not os.environ.get("SECRET_KEY"):
    _var_dir = Path(os.environ.get("VETO_VAR_DIR") or Path(__file__).resolve().parents[2] / "var")
    os.environ["SECRET_KEY"] = _local_secret_key(_var_dir / "secret-key")

from veto_cloud.settings.base import *  # noqa: E402,F403
