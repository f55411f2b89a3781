import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from reconrouter.api.v1 import options_pb2 as _options_pb2
from reconrouter.exceptions.v1 import exceptions_pb2 as _exceptions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SlaTier(_message.Message):
    __slots__ = ("severity", "due_in_hours")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    DUE_IN_HOURS_FIELD_NUMBER: _ClassVar[int]
    severity: _exceptions_pb2.Severity
    due_in_hours: int
    def __init__(self, severity: _Optional[_Union[_exceptions_pb2.Severity, str]] = ..., due_in_hours: _Optional[int] = ...) -> None: ...

class SlaEscalation(_message.Message):
    __slots__ = ("target_system", "queue")
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    queue: str
    def __init__(self, target_system: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class SlaPolicy(_message.Message):
    __slots__ = ("tiers", "escalation", "updated_at")
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    tiers: _containers.RepeatedCompositeFieldContainer[SlaTier]
    escalation: SlaEscalation
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, tiers: _Optional[_Iterable[_Union[SlaTier, _Mapping]]] = ..., escalation: _Optional[_Union[SlaEscalation, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSlaPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PutSlaPolicyRequest(_message.Message):
    __slots__ = ("tiers", "escalation")
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    tiers: _containers.RepeatedCompositeFieldContainer[SlaTier]
    escalation: SlaEscalation
    def __init__(self, tiers: _Optional[_Iterable[_Union[SlaTier, _Mapping]]] = ..., escalation: _Optional[_Union[SlaEscalation, _Mapping]] = ...) -> None: ...

class RuleConditions(_message.Message):
    __slots__ = ("severities", "min_amount", "currency", "min_age_hours", "sources", "reason_contains", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEVERITIES_FIELD_NUMBER: _ClassVar[int]
    MIN_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MIN_AGE_HOURS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    REASON_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    severities: _containers.RepeatedScalarFieldContainer[_exceptions_pb2.Severity]
    min_amount: str
    currency: str
    min_age_hours: int
    sources: _containers.RepeatedScalarFieldContainer[str]
    reason_contains: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, severities: _Optional[_Iterable[_Union[_exceptions_pb2.Severity, str]]] = ..., min_amount: _Optional[str] = ..., currency: _Optional[str] = ..., min_age_hours: _Optional[int] = ..., sources: _Optional[_Iterable[str]] = ..., reason_contains: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RuleAction(_message.Message):
    __slots__ = ("target_system", "queue", "assignee", "severity", "severity_reason")
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_REASON_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    queue: str
    assignee: str
    severity: _exceptions_pb2.Severity
    severity_reason: str
    def __init__(self, target_system: _Optional[str] = ..., queue: _Optional[str] = ..., assignee: _Optional[str] = ..., severity: _Optional[_Union[_exceptions_pb2.Severity, str]] = ..., severity_reason: _Optional[str] = ...) -> None: ...

class RoutingRule(_message.Message):
    __slots__ = ("id", "name", "priority", "enabled", "conditions", "action", "auto_dispatch", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    AUTO_DISPATCH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    priority: int
    enabled: bool
    conditions: RuleConditions
    action: RuleAction
    auto_dispatch: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., priority: _Optional[int] = ..., enabled: _Optional[bool] = ..., conditions: _Optional[_Union[RuleConditions, _Mapping]] = ..., action: _Optional[_Union[RuleAction, _Mapping]] = ..., auto_dispatch: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRoutingRuleRequest(_message.Message):
    __slots__ = ("name", "priority", "enabled", "conditions", "action", "auto_dispatch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    AUTO_DISPATCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    priority: int
    enabled: bool
    conditions: RuleConditions
    action: RuleAction
    auto_dispatch: bool
    def __init__(self, name: _Optional[str] = ..., priority: _Optional[int] = ..., enabled: _Optional[bool] = ..., conditions: _Optional[_Union[RuleConditions, _Mapping]] = ..., action: _Optional[_Union[RuleAction, _Mapping]] = ..., auto_dispatch: _Optional[bool] = ...) -> None: ...

class UpdateRoutingRuleRequest(_message.Message):
    __slots__ = ("rule_id", "name", "priority", "enabled", "conditions", "action", "auto_dispatch")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    AUTO_DISPATCH_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    name: str
    priority: int
    enabled: bool
    conditions: RuleConditions
    action: RuleAction
    auto_dispatch: bool
    def __init__(self, rule_id: _Optional[str] = ..., name: _Optional[str] = ..., priority: _Optional[int] = ..., enabled: _Optional[bool] = ..., conditions: _Optional[_Union[RuleConditions, _Mapping]] = ..., action: _Optional[_Union[RuleAction, _Mapping]] = ..., auto_dispatch: _Optional[bool] = ...) -> None: ...

class ListRoutingRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRoutingRulesResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RoutingRule]
    def __init__(self, items: _Optional[_Iterable[_Union[RoutingRule, _Mapping]]] = ...) -> None: ...

class GetRoutingRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class DeleteRoutingRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class DeleteRoutingRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EvaluateRoutingRulesRequest(_message.Message):
    __slots__ = ("exception_id",)
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    def __init__(self, exception_id: _Optional[str] = ...) -> None: ...

class RuleEvaluation(_message.Message):
    __slots__ = ("rule_id", "name", "priority", "matched", "failed_conditions")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    FAILED_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    name: str
    priority: int
    matched: bool
    failed_conditions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rule_id: _Optional[str] = ..., name: _Optional[str] = ..., priority: _Optional[int] = ..., matched: _Optional[bool] = ..., failed_conditions: _Optional[_Iterable[str]] = ...) -> None: ...

class EvaluateRoutingRulesResponse(_message.Message):
    __slots__ = ("matched_rule_id", "action", "rules")
    MATCHED_RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    matched_rule_id: str
    action: RuleAction
    rules: _containers.RepeatedCompositeFieldContainer[RuleEvaluation]
    def __init__(self, matched_rule_id: _Optional[str] = ..., action: _Optional[_Union[RuleAction, _Mapping]] = ..., rules: _Optional[_Iterable[_Union[RuleEvaluation, _Mapping]]] = ...) -> None: ...
