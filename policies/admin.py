from django.contrib import admin

from policies.models import RegisteredTool, RuleSetVersion


@admin.register(RuleSetVersion)
class RuleSetVersionAdmin(admin.ModelAdmin):
    """Read-only: versions are immutable and published through the API or the policies page."""

    list_display = ("team", "number", "status", "is_active", "author_name", "created_at", "published_at")
    list_filter = ("team", "status", "is_active")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(RegisteredTool)
class RegisteredToolAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "updated_at")
    list_filter = ("team",)
    search_fields = ("name",)
