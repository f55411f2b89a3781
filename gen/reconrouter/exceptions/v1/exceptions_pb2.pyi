import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from reconrouter.api.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    LOW: _ClassVar[Severity]
    MEDIUM: _ClassVar[Severity]
    HIGH: _ClassVar[Severity]
    CRITICAL: _ClassVar[Severity]

class ExceptionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXCEPTION_STATUS_UNSPECIFIED: _ClassVar[ExceptionStatus]
    OPEN: _ClassVar[ExceptionStatus]
    ASSIGNED: _ClassVar[ExceptionStatus]
    PENDING_RESOLUTION: _ClassVar[ExceptionStatus]
    RESOLVED: _ClassVar[ExceptionStatus]
SEVERITY_UNSPECIFIED: Severity
LOW: Severity
MEDIUM: Severity
HIGH: Severity
CRITICAL: Severity
EXCEPTION_STATUS_UNSPECIFIED: ExceptionStatus
OPEN: ExceptionStatus
ASSIGNED: ExceptionStatus
PENDING_RESOLUTION: ExceptionStatus
RESOLVED: ExceptionStatus

class ReconciliationException(_message.Message):
    __slots__ = ("id", "transaction_id", "severity", "status", "reason", "amount", "currency", "source", "assigned_to", "due_at", "external_system", "external_issue_id", "resolution_notes", "resolution_reason", "metadata", "created_at", "updated_at", "occurred_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_TO_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTES_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_REASON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    transaction_id: str
    severity: Severity
    status: ExceptionStatus
    reason: str
    amount: str
    currency: str
    source: str
    assigned_to: str
    due_at: _timestamp_pb2.Timestamp
    external_system: str
    external_issue_id: str
    resolution_notes: str
    resolution_reason: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., status: _Optional[_Union[ExceptionStatus, str]] = ..., reason: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., source: _Optional[str] = ..., assigned_to: _Optional[str] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., external_system: _Optional[str] = ..., external_issue_id: _Optional[str] = ..., resolution_notes: _Optional[str] = ..., resolution_reason: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateExceptionRequest(_message.Message):
    __slots__ = ("transaction_id", "severity", "reason", "amount", "currency", "source", "due_at", "metadata", "occurred_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    severity: Severity
    reason: str
    amount: str
    currency: str
    source: str
    due_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, transaction_id: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., reason: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., source: _Optional[str] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchCreateExceptionsRequest(_message.Message):
    __slots__ = ("exceptions",)
    EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    exceptions: _containers.RepeatedCompositeFieldContainer[CreateExceptionRequest]
    def __init__(self, exceptions: _Optional[_Iterable[_Union[CreateExceptionRequest, _Mapping]]] = ...) -> None: ...

class BatchCreateExceptionsResponse(_message.Message):
    __slots__ = ("exceptions",)
    EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    exceptions: _containers.RepeatedCompositeFieldContainer[ReconciliationException]
    def __init__(self, exceptions: _Optional[_Iterable[_Union[ReconciliationException, _Mapping]]] = ...) -> None: ...

class ListExceptionsRequest(_message.Message):
    __slots__ = ("status", "severity", "assigned_to", "external_system", "date_from", "date_to", "cursor", "limit", "sort_by", "sort_order", "overdue")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_TO_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DATE_FROM_FIELD_NUMBER: _ClassVar[int]
    DATE_TO_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    SORT_ORDER_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    status: ExceptionStatus
    severity: Severity
    assigned_to: str
    external_system: str
    date_from: str
    date_to: str
    cursor: str
    limit: int
    sort_by: str
    sort_order: str
    overdue: bool
    def __init__(self, status: _Optional[_Union[ExceptionStatus, str]] = ..., severity: _Optional[_Union[Severity, str]] = ..., assigned_to: _Optional[str] = ..., external_system: _Optional[str] = ..., date_from: _Optional[str] = ..., date_to: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ..., sort_by: _Optional[str] = ..., sort_order: _Optional[str] = ..., overdue: _Optional[bool] = ...) -> None: ...

class ListExceptionsResponse(_message.Message):
    __slots__ = ("items", "next_cursor", "limit", "has_more")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReconciliationException]
    next_cursor: str
    limit: int
    has_more: bool
    def __init__(self, items: _Optional[_Iterable[_Union[ReconciliationException, _Mapping]]] = ..., next_cursor: _Optional[str] = ..., limit: _Optional[int] = ..., has_more: _Optional[bool] = ...) -> None: ...

class GetExceptionRequest(_message.Message):
    __slots__ = ("exception_id",)
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    def __init__(self, exception_id: _Optional[str] = ...) -> None: ...

class ListExceptionHistoryRequest(_message.Message):
    __slots__ = ("exception_id", "cursor", "limit")
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    cursor: str
    limit: int
    def __init__(self, exception_id: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("id", "action", "actor_id", "changes", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    action: str
    actor_id: str
    changes: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., action: _Optional[str] = ..., actor_id: _Optional[str] = ..., changes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListExceptionHistoryResponse(_message.Message):
    __slots__ = ("items", "next_cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    next_cursor: str
    def __init__(self, items: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class DispatchExceptionRequest(_message.Message):
    __slots__ = ("exception_id", "target_system", "queue")
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    target_system: str
    queue: str
    def __init__(self, exception_id: _Optional[str] = ..., target_system: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class DispatchExceptionResponse(_message.Message):
    __slots__ = ("exception_id", "target_system", "queue", "external_reference", "acknowledged", "dispatched_at", "delivery_id", "next_attempt_at")
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    DISPATCHED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    target_system: str
    queue: str
    external_reference: str
    acknowledged: bool
    dispatched_at: _timestamp_pb2.Timestamp
    delivery_id: str
    next_attempt_at: _timestamp_pb2.Timestamp
    def __init__(self, exception_id: _Optional[str] = ..., target_system: _Optional[str] = ..., queue: _Optional[str] = ..., external_reference: _Optional[str] = ..., acknowledged: _Optional[bool] = ..., dispatched_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivery_id: _Optional[str] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BulkDispatchExceptionsRequest(_message.Message):
    __slots__ = ("exception_ids", "target_system", "queue")
    EXCEPTION_IDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    exception_ids: _containers.RepeatedScalarFieldContainer[str]
    target_system: str
    queue: str
    def __init__(self, exception_ids: _Optional[_Iterable[str]] = ..., target_system: _Optional[str] = ..., queue: _Optional[str] = ...) -> None: ...

class BulkAssignExceptionsRequest(_message.Message):
    __slots__ = ("exception_ids", "assignee")
    EXCEPTION_IDS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    exception_ids: _containers.RepeatedScalarFieldContainer[str]
    assignee: str
    def __init__(self, exception_ids: _Optional[_Iterable[str]] = ..., assignee: _Optional[str] = ...) -> None: ...

class BulkResolveExceptionsRequest(_message.Message):
    __slots__ = ("exception_ids", "resolution", "reason")
    EXCEPTION_IDS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    exception_ids: _containers.RepeatedScalarFieldContainer[str]
    resolution: str
    reason: str
    def __init__(self, exception_ids: _Optional[_Iterable[str]] = ..., resolution: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BulkResult(_message.Message):
    __slots__ = ("succeeded", "failed", "total")
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    succeeded: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedCompositeFieldContainer[BulkItemFailure]
    total: int
    def __init__(self, succeeded: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[_Union[BulkItemFailure, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class BulkItemFailure(_message.Message):
    __slots__ = ("exception_id", "error", "reason", "delivery_id", "next_attempt_at")
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    error: str
    reason: str
    delivery_id: str
    next_attempt_at: _timestamp_pb2.Timestamp
    def __init__(self, exception_id: _Optional[str] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ..., delivery_id: _Optional[str] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReceiveCallbackRequest(_message.Message):
    __slots__ = ("exception_id", "external_system", "external_issue_id", "status", "assignee", "resolution_notes")
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ISSUE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTES_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    external_system: str
    external_issue_id: str
    status: ExceptionStatus
    assignee: str
    resolution_notes: str
    def __init__(self, exception_id: _Optional[str] = ..., external_system: _Optional[str] = ..., external_issue_id: _Optional[str] = ..., status: _Optional[_Union[ExceptionStatus, str]] = ..., assignee: _Optional[str] = ..., resolution_notes: _Optional[str] = ...) -> None: ...

class ReceiveCallbackResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...
