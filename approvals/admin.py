from django.contrib import admin
from django.http import HttpRequest

from approvals.models import Approval


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    """Read-only for operators: approvals are resolved through their services, never edited."""

    list_display = ("tool_name", "team", "status", "rule_id", "created_at", "expires_at", "resolved_by")
    list_filter = ("team", "status")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return False
