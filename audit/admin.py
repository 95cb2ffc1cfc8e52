from django.contrib import admin

from audit.models import DecisionRecord


@admin.register(DecisionRecord)
class DecisionRecordAdmin(admin.ModelAdmin):
    """Read-only: the decision record is appended, never edited."""

    list_display = ("created_at", "team", "tool_name", "decision", "rule_id", "source", "latency_ms")
    list_filter = ("team", "decision", "source")
    search_fields = ("tool_name", "rule_id")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
