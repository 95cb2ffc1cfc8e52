from django.contrib import admin
from django.http import HttpRequest

from audit.models import DecisionRecord


@admin.register(DecisionRecord)
class DecisionRecordAdmin(admin.ModelAdmin):
    """Read-only: the decision record is appended, never edited."""

    list_display = ("created_at", "team", "tool_name", "decision", "rule_id", "source", "latency_ms")
    list_filter = ("team", "decision", "source")
    search_fields = ("tool_name", "rule_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DecisionRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DecisionRecord | None = None) -> bool:
        return False
