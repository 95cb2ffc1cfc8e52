"""Shapes of ``POST /v1/decisions`` (what ``VetoCloudClient.log_decision`` sends)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ClientDecisionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tool_name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict)
    decision: Literal["allow", "deny", "require_approval"]
    reason: str | None = None
    mode: str = Field(default="deterministic", max_length=32)
    latency_ms: float = Field(default=0.0, ge=0)
    source: Literal["client"] = "client"
    context: dict[str, Any] | None = None


class ClientDecisionCreated(BaseModel):
    id: str
    underscore_id: str = Field(serialization_alias="_id")
