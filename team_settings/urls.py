"""The team settings pages, mounted under /dashboard/teams/<slug>/settings/ (veto_cloud/urls.py),
namespace ``team_settings``. Every form names its person by username and its group by slug in
the body, so the paths carry only the team (and a key's id)."""

from django.urls import path

from team_settings import views

urlpatterns = [
    path("", views.settings_page, name="page"),
    path("members/add", views.member_add, name="member-add"),
    path("members/role", views.member_role, name="member-role"),
    path("members/remove", views.member_remove, name="member-remove"),
    path("groups/create", views.group_create, name="group-create"),
    path("groups/rename", views.group_rename, name="group-rename"),
    path("groups/delete", views.group_delete, name="group-delete"),
    path("groups/members/add", views.group_member_add, name="group-member-add"),
    path("groups/members/remove", views.group_member_remove, name="group-member-remove"),
    path("options", views.options, name="options"),
    path("keys/<uuid:key_id>/revoke", views.key_revoke, name="key-revoke"),
]
