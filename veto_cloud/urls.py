from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from veto_cloud.health import readyz
from veto_cloud.metrics import metrics

api_v1 = [
    path("", include("policies.api.urls")),
    path("", include("audit.api.urls")),
    path("", include("approvals.api.urls")),
    path("", include("tenancy.api.urls")),
    # Signed by Slack, not by an API key (webhooks/slack/views.py).
    path("", include("webhooks.slack.urls")),
    path("", include("webhooks.api.urls")),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard:home", permanent=False)),
    path("readyz", readyz, name="readyz"),
    # Prometheus's text format behind VETO_METRICS_TOKEN (veto_cloud/metrics.py).
    path("metrics", metrics, name="metrics"),
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view loads its start-up script from a URL, not inline (the strict CSP refuses
    # inline scripts); templates/drf_spectacular/swagger_ui.html moves its inline style to
    # static/. Swagger UI's own stylesheet draws its icons as data: images.
    path(
        "api/docs/",
        csp_update({"img-src": ["data:"]})(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", include(("dashboards.urls", "dashboard"))),
    path("dashboard/teams/<slug:slug>/settings/webhooks/", include(("webhooks.urls", "webhooks"))),
    path("dashboard/teams/<slug:slug>/settings/", include(("team_settings.urls", "team_settings"))),
    path("dashboard/teams/", include(("policies.urls", "policies"))),
    path("dashboard/approvals/", include(("approvals.urls", "approvals"))),
    path("dashboard/api-keys/", include(("tenancy.urls", "tenancy"))),
    path("admin/", admin.site.urls),
]

# JSON under the API prefixes, Django's plain pages elsewhere (DEBUG's pages only when opted in).
handler404 = "common.errors.page_not_found"
handler500 = "common.errors.server_error"
