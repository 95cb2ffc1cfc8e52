"""ASGI entry point: the runtime gateway in front of Django."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.local")

# Django must be set up before anything imports models (the routes below do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from common.events import listen as listen_for_events  # noqa: E402
from dashboards import sink as live_sink  # noqa: E402
from dashboards.routing import websocket_urlpatterns  # noqa: E402
from policies.engine.expressions import warm_up  # noqa: E402
from runtime.gateway import Gateway  # noqa: E402
from runtime.routes import runtime_routes  # noqa: E402

# One listener per process: other processes' events to this one's handlers (common.events); and
# the live dashboards' sink, flushing on this loop (dashboards/sink.py).
# Websockets: the session's user (AuthMiddlewareStack), and only from this site's own pages
# (the Origin must be an allowed host: another site cannot open a socket with our cookie).
application = ProtocolTypeRouter(
    {
        "http": Gateway(django_asgi_app, runtime_routes, background=[listen_for_events, live_sink.run]),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Pay one-time costs before the first request instead of inside it (measured: a cold worker's
# first requests waited ~300 ms for the CEL parser, and its first request to Django ~170 ms more
# for the URL configuration and every view module it imports: a first resolve after a start
# took 0.45 s), then move everything loaded so far out of the garbage collector's reach: full
# collections over Django's import graph took ~65 ms each and showed up as latency spikes.
warm_up()
get_resolver().url_patterns  # noqa: B018 - loading it is the point
gc.freeze()
