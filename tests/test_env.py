"""Settings read the environment through one module and fail loudly on malformed values."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from veto_cloud.env import (
    database_config,
    env_bool,
    env_int,
    env_list,
    public_key_hex_checked,
    redis_database_number,
)


def test_env_bool__malformed__fails_naming_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        env_bool("DEBUG", False)


def test_env_int__out_of_range_or_junk__fails(monkeypatch):
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="PORT"):
        env_int("PORT", 8000)
    monkeypatch.setenv("PORT", "70000")
    with pytest.raises(ImproperlyConfigured, match="maximum"):
        env_int("PORT", 8000, maximum=65535)


def test_env_list__comma_separated(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", "a.example, b.example,,")
    assert env_list("ALLOWED_HOSTS", []) == ["a.example", "b.example"]


def test_database_config__unsupported_engine__fails(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="not supported"):
        database_config("mysql://root@localhost/x", base_dir=tmp_path)


def test_database_config__postgres_url__uses_the_psycopg_pool(tmp_path):
    config = database_config("postgres://postgres@127.0.0.1:5432/veto", base_dir=tmp_path)
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["OPTIONS"]["pool"]["max_size"] >= 1


def test_settings__no_secret_key_without_debug__refuses_to_start(monkeypatch):
    import subprocess
    import sys

    env = {"DEBUG": "false", "SECRET_KEY": "", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import veto_cloud.settings.base"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("value", ["abc", "zz" * 32, "00" * 31])
def test_retired_public_keys_setting__not_a_key__fails_at_start_naming_it(value):
    with pytest.raises(ImproperlyConfigured, match="VETO_AUDIT_RETIRED_PUBLIC_KEYS"):
        public_key_hex_checked("VETO_AUDIT_RETIRED_PUBLIC_KEYS", value)


@pytest.mark.parametrize(
    ("url", "number"),
    [
        ("redis://127.0.0.1:6379/15", 15),
        ("redis://127.0.0.1:6379/", 0),
        ("redis://127.0.0.1:6379", 0),
        ("redis://:secret@redis.internal:6379/3?socket_timeout=1", 3),
        ("redis://127.0.0.1:6379?db=7", 7),
        ("", 0),
    ],
)
def test_redis_database_number__path_or_db_query__else_zero(url, number):
    assert redis_database_number(url) == number


def test_events_channel__carries_the_pubsub_prefix(settings):
    # Given two installations on one Redis server, told apart by their prefixes
    from common import events

    settings.REDIS_PUBSUB_PREFIX = "veto.db3"
    first = events.channel()
    settings.REDIS_PUBSUB_PREFIX = "veto.db4"
    second = events.channel()
    # Then their events go on different pub/sub channels
    assert (first, second) == ("veto.db3:events", "veto.db4:events")


def test_channel_layer__prefix_follows_the_pubsub_prefix():
    # The channel layer (dashboards' pushes) is pub/sub too: with Redis its names carry the same
    # prefix; embedded, it is the one process's in-memory layer, with no pub/sub to keep apart.
    from django.conf import settings as live

    layer = live.CHANNEL_LAYERS["default"]
    if live.REDIS_URL:
        assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
        assert layer["CONFIG"]["prefix"] == f"{live.REDIS_PUBSUB_PREFIX}.asgi"
    else:
        assert layer["BACKEND"] == "channels.layers.InMemoryChannelLayer"
