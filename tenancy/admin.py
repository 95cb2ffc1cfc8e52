from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tenancy.models import ApiKey, ApproverGroup, Membership, Organization, Team


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    exclude = ("created_by_api_key",)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "organization", "is_default", "created_at")
    list_filter = ("organization",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    exclude = ("created_by_api_key",)
    inlines = [MembershipInline]


@admin.register(ApproverGroup)
class ApproverGroupAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "team")
    list_filter = ("team",)
    filter_horizontal = ("members",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created with `manage.py create_api_key` or the API (the token is shown once);
    here operators can see and revoke them."""

    list_display = ("name", "prefix", "team", "user", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = ("team",)
    search_fields = ("name", "prefix", "user__username")
    # A key's owner is fixed: turning a team's key into a person's (or back) would change who it acts as.
    # Its origin too: four-eyes counts a key's lineage as one actor (``created_by_api_key``).
    readonly_fields = (
        "prefix",
        "key_hash",
        "created_at",
        "last_used_at",
        "created_by",
        "user",
        "created_by_api_key",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        from tenancy.services import api_key_revoke

        for api_key in queryset:
            api_key_revoke(api_key=api_key)
