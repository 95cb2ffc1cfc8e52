"""Expiry: pending approvals past their deadline expire, exactly once; others are untouched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import Approval
from approvals.services import approvals_expire_due
from tests.factories import ApprovalFactory

pytestmark = pytest.mark.django_db


def test_expire_due__only_pending_and_past_deadline():
    now = timezone.now()
    due = ApprovalFactory(expires_at=now - timedelta(seconds=1))
    not_due = ApprovalFactory(expires_at=now + timedelta(minutes=5))
    resolved = ApprovalFactory(
        expires_at=now - timedelta(minutes=5),
        status=Approval.Status.APPROVED,
        resolved_at=now,
        resolved_by="alice",
    )

    assert approvals_expire_due(now=now) == 1
    assert approvals_expire_due(now=now) == 0  # idempotent

    due.refresh_from_db(), not_due.refresh_from_db(), resolved.refresh_from_db()
    assert (due.status, due.resolved_by) == (Approval.Status.EXPIRED, "system:timeout")
    assert not_due.status == Approval.Status.PENDING
    assert (resolved.status, resolved.resolved_by) == (Approval.Status.APPROVED, "alice")
