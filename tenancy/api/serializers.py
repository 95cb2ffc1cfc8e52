from __future__ import annotations

from typing import Any

from rest_framework import serializers

from common.api import iso
from tenancy.models import ApiKey, Organization, Team


class OrganizationCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100, required=False)


class ProjectCreateInputSerializer(serializers.Serializer):
    organizationId = serializers.UUIDField()
    name = serializers.CharField(max_length=200)


class ProjectListQuerySerializer(serializers.Serializer):
    organizationId = serializers.UUIDField(required=False)


class ApiKeyCreateInputSerializer(serializers.Serializer):
    projectId = serializers.UUIDField(required=False)
    name = serializers.CharField(max_length=200)
    scopes = serializers.ListField(child=serializers.CharField(max_length=64), required=False)


def organization_output(organization: Organization) -> dict[str, Any]:
    return {
        "_id": str(organization.id),
        "id": str(organization.id),
        "name": organization.name,
        "slug": organization.slug,
        "createdAt": iso(organization.created_at),
        "updatedAt": iso(organization.updated_at),
    }


def project_output(team: Team) -> dict[str, Any]:
    return {
        "_id": str(team.id),
        "id": str(team.id),
        "organizationId": str(team.organization_id),
        "name": team.name,
        "slug": team.slug,
        "isDefault": team.is_default,
        "createdAt": iso(team.created_at),
        "updatedAt": iso(team.updated_at),
    }


def api_key_output(api_key: ApiKey) -> dict[str, Any]:
    return {
        "_id": str(api_key.id),
        "id": str(api_key.id),
        "name": api_key.name,
        "keyPrefix": api_key.prefix,
        "isRevoked": api_key.is_revoked,
        "projectId": str(api_key.team_id),
        "scopes": list(api_key.scopes),
        # A personal key's owner (it acts as them, e.g. resolving approvals); None for a team's key.
        "user": api_key.user.get_username() if api_key.user is not None else None,
        "lastUsedAt": iso(api_key.last_used_at),
        "createdAt": iso(api_key.created_at),
    }


def api_key_created_output(api_key: ApiKey, token: str) -> dict[str, Any]:
    return {**api_key_output(api_key), "key": token}
