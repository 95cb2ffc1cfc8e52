"""ASGI entry point: the runtime gateway in front of Django."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veto_cloud.settings.local")

# Django must be set up before anything imports models (the routes below do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from common.events import listen as listen_for_events  # noqa: E402
from policies.engine.expressions import warm_up  # noqa: E402
from runtime.gateway import Gateway  # noqa: E402
from runtime.routes import runtime_routes  # noqa: E402

# One listener per process: other processes' events to this one's handlers (common.events).
application = ProtocolTypeRouter(
    {"http": Gateway(django_asgi_app, runtime_routes, background=[listen_for_events])}
)

# Pay one-time costs before the first request instead of inside it (measured: a cold worker's
# first requests waited ~300 ms for the CEL parser), then move everything loaded so far out of
# the garbage collector's reach: full collections over Django's import graph took ~65 ms each
# and showed up as latency spikes under load.
warm_up()
gc.freeze()
