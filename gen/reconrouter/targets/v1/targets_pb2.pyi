import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from reconrouter.api.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutTargetRequest(_message.Message):
    __slots__ = ("target_system", "base_url", "email", "api_token", "project_key", "issue_type", "instance_url", "username", "password", "table", "url", "secret", "signature_scheme", "inbound_secret", "resolve_transition_id", "resolve_close_code")
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    API_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_URL_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_SCHEME_FIELD_NUMBER: _ClassVar[int]
    INBOUND_SECRET_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_TRANSITION_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_CLOSE_CODE_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    base_url: str
    email: str
    api_token: str
    project_key: str
    issue_type: str
    instance_url: str
    username: str
    password: str
    table: str
    url: str
    secret: str
    signature_scheme: str
    inbound_secret: str
    resolve_transition_id: str
    resolve_close_code: str
    def __init__(self, target_system: _Optional[str] = ..., base_url: _Optional[str] = ..., email: _Optional[str] = ..., api_token: _Optional[str] = ..., project_key: _Optional[str] = ..., issue_type: _Optional[str] = ..., instance_url: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., table: _Optional[str] = ..., url: _Optional[str] = ..., secret: _Optional[str] = ..., signature_scheme: _Optional[str] = ..., inbound_secret: _Optional[str] = ..., resolve_transition_id: _Optional[str] = ..., resolve_close_code: _Optional[str] = ...) -> None: ...

class GetTargetRequest(_message.Message):
    __slots__ = ("target_system",)
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    def __init__(self, target_system: _Optional[str] = ...) -> None: ...

class ListTargetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTargetsResponse(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    def __init__(self, targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ...) -> None: ...

class DeleteTargetRequest(_message.Message):
    __slots__ = ("target_system",)
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    def __init__(self, target_system: _Optional[str] = ...) -> None: ...

class DeleteTargetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseTargetRequest(_message.Message):
    __slots__ = ("target_system",)
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    def __init__(self, target_system: _Optional[str] = ...) -> None: ...

class ResumeTargetRequest(_message.Message):
    __slots__ = ("target_system",)
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    def __init__(self, target_system: _Optional[str] = ...) -> None: ...

class RotateTargetSecretRequest(_message.Message):
    __slots__ = ("target_system",)
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    def __init__(self, target_system: _Optional[str] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("target_system", "base_url", "project_key", "issue_type", "instance_url", "table", "url", "configured_secrets", "created_at", "updated_at", "paused", "signature_scheme", "secret", "previous_secret_expires_at", "inbound_path", "resolve_transition_id", "resolve_close_code")
    TARGET_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    PROJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_URL_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_SECRETS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_SCHEME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SECRET_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    INBOUND_PATH_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_TRANSITION_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_CLOSE_CODE_FIELD_NUMBER: _ClassVar[int]
    target_system: str
    base_url: str
    project_key: str
    issue_type: str
    instance_url: str
    table: str
    url: str
    configured_secrets: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    paused: bool
    signature_scheme: str
    secret: str
    previous_secret_expires_at: _timestamp_pb2.Timestamp
    inbound_path: str
    resolve_transition_id: str
    resolve_close_code: str
    def __init__(self, target_system: _Optional[str] = ..., base_url: _Optional[str] = ..., project_key: _Optional[str] = ..., issue_type: _Optional[str] = ..., instance_url: _Optional[str] = ..., table: _Optional[str] = ..., url: _Optional[str] = ..., configured_secrets: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paused: _Optional[bool] = ..., signature_scheme: _Optional[str] = ..., secret: _Optional[str] = ..., previous_secret_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., inbound_path: _Optional[str] = ..., resolve_transition_id: _Optional[str] = ..., resolve_close_code: _Optional[str] = ...) -> None: ...
