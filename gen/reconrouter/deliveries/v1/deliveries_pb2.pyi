import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from reconrouter.api.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Delivery(_message.Message):
    __slots__ = ("id", "exception_id", "target_system", "queue", "state", "attempt_count", "next_attempt_at", "last_error", "external_reference", "created_at", "updated_at", "delivered_at", "attempts", "last_reason", "kind")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Delivery.State]
        PENDING: _ClassVar[Delivery.State]
        IN_FLIGHT: _ClassVar[Delivery.State]
        DELIVERED: _ClassVar[Delivery.State]
        FAILED: _ClassVar[Delivery.State]
        CANCELLED: _ClassVar[Delivery.State]
    STATE_UNSPECIFIED: Delivery.State
    PENDING: Delivery.State
    IN_FLIGHT: Delivery.State
    DELIVERED: Delivery.State
    FAILED: Delivery.State
    CANCELLED: Delivery.State
    ID_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_REASON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    id: str
    exception_id: str
    target_system: str
    queue: str
    state: Delivery.State
    attempt_count: int
    next_attempt_at: _timestamp_pb2.Timestamp
    last_error: str
    external_reference: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    attempts: _containers.RepeatedCompositeFieldContainer[DeliveryAttempt]
    last_reason: str
    kind: str
    def __init__(self, id: _Optional[str] = ..., exception_id: _Optional[str] = ..., target_system: _Optional[str] = ..., queue: _Optional[str] = ..., state: _Optional[_Union[Delivery.State, str]] = ..., attempt_count: _Optional[int] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., external_reference: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[DeliveryAttempt, _Mapping]]] = ..., last_reason: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class DeliveryAttempt(_message.Message):
    __slots__ = ("number", "started_at", "duration_ms", "outcome", "http_status", "error")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[DeliveryAttempt.Outcome]
        DELIVERED: _ClassVar[DeliveryAttempt.Outcome]
        RETRYABLE_ERROR: _ClassVar[DeliveryAttempt.Outcome]
        PERMANENT_ERROR: _ClassVar[DeliveryAttempt.Outcome]
        TIMEOUT: _ClassVar[DeliveryAttempt.Outcome]
    OUTCOME_UNSPECIFIED: DeliveryAttempt.Outcome
    DELIVERED: DeliveryAttempt.Outcome
    RETRYABLE_ERROR: DeliveryAttempt.Outcome
    PERMANENT_ERROR: DeliveryAttempt.Outcome
    TIMEOUT: DeliveryAttempt.Outcome
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    number: int
    started_at: _timestamp_pb2.Timestamp
    duration_ms: int
    outcome: DeliveryAttempt.Outcome
    http_status: int
    error: str
    def __init__(self, number: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[int] = ..., outcome: _Optional[_Union[DeliveryAttempt.Outcome, str]] = ..., http_status: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ListExceptionDeliveriesRequest(_message.Message):
    __slots__ = ("exception_id",)
    EXCEPTION_ID_FIELD_NUMBER: _ClassVar[int]
    exception_id: str
    def __init__(self, exception_id: _Optional[str] = ...) -> None: ...

class ListExceptionDeliveriesResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, items: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("state", "target_system", "cursor", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: Delivery.State
    target_system: str
    cursor: str
    limit: int
    def __init__(self, state: _Optional[_Union[Delivery.State, str]] = ..., target_system: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("items", "next_cursor", "limit", "has_more")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Delivery]
    next_cursor: str
    limit: int
    has_more: bool
    def __init__(self, items: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., next_cursor: _Optional[str] = ..., limit: _Optional[int] = ..., has_more: _Optional[bool] = ...) -> None: ...

class GetDeliveryRequest(_message.Message):
    __slots__ = ("delivery_id",)
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    def __init__(self, delivery_id: _Optional[str] = ...) -> None: ...

class RetryDeliveryRequest(_message.Message):
    __slots__ = ("delivery_id",)
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    def __init__(self, delivery_id: _Optional[str] = ...) -> None: ...

class CancelDeliveryRequest(_message.Message):
    __slots__ = ("delivery_id",)
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    def __init__(self, delivery_id: _Optional[str] = ...) -> None: ...

class BulkRetryDeliveriesRequest(_message.Message):
    __slots__ = ("delivery_ids",)
    DELIVERY_IDS_FIELD_NUMBER: _ClassVar[int]
    delivery_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, delivery_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BulkDeliveryResult(_message.Message):
    __slots__ = ("succeeded", "failed", "total")
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    succeeded: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedCompositeFieldContainer[BulkDeliveryFailure]
    total: int
    def __init__(self, succeeded: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[_Union[BulkDeliveryFailure, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class BulkDeliveryFailure(_message.Message):
    __slots__ = ("delivery_id", "error", "reason")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    error: str
    reason: str
    def __init__(self, delivery_id: _Optional[str] = ..., error: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
