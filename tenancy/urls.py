"""The "My API keys" page, mounted under /dashboard/api-keys/ (see veto_cloud/urls.py)."""

from django.urls import path

from tenancy import views

urlpatterns = [
    path("", views.my_api_keys, name="my-api-keys"),
    path("<uuid:key_id>/revoke", views.my_api_key_revoke, name="my-api-key-revoke"),
]
