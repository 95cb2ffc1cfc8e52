"""The team settings pages, mounted under /dashboard/teams/<slug>/settings/ (veto_cloud/urls.py)."""

from django.urls import path  # noqa: F401 - the pages are added here

urlpatterns: list = []
