"""Output shapes of the rule-set sync API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from common.api import iso
from policies import selectors
from policies.models import RuleSetPublication, RuleSetVersion


class PreviewQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=selectors.IMPACT_PREVIEW_MAX,
        default=selectors.IMPACT_PREVIEW_DEFAULT,
    )


def version_summary(version: RuleSetVersion) -> dict[str, Any]:
    return {
        "version": version.number,
        "status": version.status,
        "isActive": version.is_active,
        "checksum": version.checksum,
        "format": version.source_format,
        "rules": len(version.document.get("rules", [])),
        "fixtures": sum(len(suite["tests"]) for suite in version.document.get("fixtures", [])),
        "author": version.author_name or None,
        "createdAt": iso(version.created_at),
        "publishedAt": iso(version.published_at),
    }


def version_detail(version: RuleSetVersion) -> dict[str, Any]:
    return {**version_summary(version), "source": version.source_text, "document": version.document}


def publication_output(publication: RuleSetPublication) -> dict[str, Any]:
    return {
        "kind": publication.kind,
        "version": publication.version.number,
        "previousVersion": publication.previous_version.number if publication.previous_version else None,
        "actor": publication.actor_name or None,
        "createdAt": iso(publication.created_at),
    }
