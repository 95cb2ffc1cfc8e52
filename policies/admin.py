from django.contrib import admin
from django.http import HttpRequest

from policies.models import RegisteredTool, RuleSetVersion


@admin.register(RuleSetVersion)
class RuleSetVersionAdmin(admin.ModelAdmin):
    """Read-only: versions are immutable and published through the API or the policies page."""

    list_display = ("team", "number", "status", "is_active", "author_name", "created_at", "published_at")
    list_filter = ("team", "status", "is_active")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RuleSetVersion | None = None) -> bool:
        return False


@admin.register(RegisteredTool)
class RegisteredToolAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "updated_at")
    list_filter = ("team",)
    search_fields = ("name",)
