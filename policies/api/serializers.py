from __future__ import annotations

from typing import Any

from rest_framework import serializers

from common.api import iso
from policies.engine.constraints import TOOL_NAME_MAX
from policies.models import RegisteredTool


class ToolParameterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    type = serializers.CharField(max_length=50, required=False, allow_null=True)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    # A field named like Field.required: the metaclass moves declared fields off the class.
    required = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]
    enum = serializers.ListField(required=False, allow_null=True)
    minimum = serializers.FloatField(required=False, allow_null=True)
    maximum = serializers.FloatField(required=False, allow_null=True)
    pattern = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class ToolSignatureSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=TOOL_NAME_MAX)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    parameters = ToolParameterSerializer(many=True, required=False)


class ToolsRegisterInputSerializer(serializers.Serializer):
    # The stubs omit max_length for many=True; DRF hands it to the ListSerializer it builds.
    tools = ToolSignatureSerializer(many=True, allow_empty=False, max_length=1000)  # type: ignore[call-arg]


def tool_output(tool: RegisteredTool) -> dict[str, Any]:
    return {
        "_id": str(tool.id),
        "id": str(tool.id),
        "name": tool.name,
        "description": tool.description,
        "arguments": tool.parameters,
        "createdAt": iso(tool.created_at),
        "updatedAt": iso(tool.updated_at),
    }
