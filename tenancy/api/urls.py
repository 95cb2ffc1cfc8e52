from django.urls import path

from tenancy.api import views

urlpatterns = [
    path("organizations", views.OrganizationsView.as_view(), name="organizations"),
    path("projects", views.ProjectsView.as_view(), name="projects"),
    path("api-keys", views.ApiKeysView.as_view(), name="api-keys"),
    path("api-keys/<str:key_id>", views.ApiKeyDetailView.as_view(), name="api-key-detail"),
]
