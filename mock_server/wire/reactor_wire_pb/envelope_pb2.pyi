from . import messages_pb2 as _messages_pb2
from . import stats_pb2 as _stats_pb2
from . import step_pb2 as _step_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_UNSPECIFIED: _ClassVar[MessageKind]
    MESSAGE_KIND_REQUEST: _ClassVar[MessageKind]
    MESSAGE_KIND_RESPONSE: _ClassVar[MessageKind]
    MESSAGE_KIND_NOTIFICATION: _ClassVar[MessageKind]
MESSAGE_KIND_UNSPECIFIED: MessageKind
MESSAGE_KIND_REQUEST: MessageKind
MESSAGE_KIND_RESPONSE: MessageKind
MESSAGE_KIND_NOTIFICATION: MessageKind

class ControlClientMessage(_message.Message):
    __slots__ = ("request_id", "kind", "ping", "request_schema", "file_uploaded", "request_clip", "request_recording", "publish_track", "pause_track", "resume_track", "unpublish_track", "client_stats", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    FILE_UPLOADED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_CLIP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RECORDING_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TRACK_FIELD_NUMBER: _ClassVar[int]
    PAUSE_TRACK_FIELD_NUMBER: _ClassVar[int]
    RESUME_TRACK_FIELD_NUMBER: _ClassVar[int]
    UNPUBLISH_TRACK_FIELD_NUMBER: _ClassVar[int]
    CLIENT_STATS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    ping: _messages_pb2.Ping
    request_schema: _messages_pb2.RequestSchema
    file_uploaded: _messages_pb2.FileUploaded
    request_clip: _messages_pb2.RequestClip
    request_recording: _messages_pb2.RequestRecording
    publish_track: _messages_pb2.PublishTrack
    pause_track: _messages_pb2.PauseTrack
    resume_track: _messages_pb2.ResumeTrack
    unpublish_track: _messages_pb2.UnpublishTrack
    client_stats: _stats_pb2.ClientStats
    error: _messages_pb2.Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., ping: _Optional[_Union[_messages_pb2.Ping, _Mapping]] = ..., request_schema: _Optional[_Union[_messages_pb2.RequestSchema, _Mapping]] = ..., file_uploaded: _Optional[_Union[_messages_pb2.FileUploaded, _Mapping]] = ..., request_clip: _Optional[_Union[_messages_pb2.RequestClip, _Mapping]] = ..., request_recording: _Optional[_Union[_messages_pb2.RequestRecording, _Mapping]] = ..., publish_track: _Optional[_Union[_messages_pb2.PublishTrack, _Mapping]] = ..., pause_track: _Optional[_Union[_messages_pb2.PauseTrack, _Mapping]] = ..., resume_track: _Optional[_Union[_messages_pb2.ResumeTrack, _Mapping]] = ..., unpublish_track: _Optional[_Union[_messages_pb2.UnpublishTrack, _Mapping]] = ..., client_stats: _Optional[_Union[_stats_pb2.ClientStats, _Mapping]] = ..., error: _Optional[_Union[_messages_pb2.Error, _Mapping]] = ...) -> None: ...

class ControlServerMessage(_message.Message):
    __slots__ = ("request_id", "kind", "model_schema", "clip_ready", "clip_failed", "moderation", "publish_track", "session_ended", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CLIP_READY_FIELD_NUMBER: _ClassVar[int]
    CLIP_FAILED_FIELD_NUMBER: _ClassVar[int]
    MODERATION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TRACK_FIELD_NUMBER: _ClassVar[int]
    SESSION_ENDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    model_schema: _messages_pb2.ModelSchema
    clip_ready: _messages_pb2.ClipReady
    clip_failed: _messages_pb2.ClipFailed
    moderation: _messages_pb2.Moderation
    publish_track: _messages_pb2.PublishTrackResponse
    session_ended: _messages_pb2.SessionEnded
    error: _messages_pb2.Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., model_schema: _Optional[_Union[_messages_pb2.ModelSchema, _Mapping]] = ..., clip_ready: _Optional[_Union[_messages_pb2.ClipReady, _Mapping]] = ..., clip_failed: _Optional[_Union[_messages_pb2.ClipFailed, _Mapping]] = ..., moderation: _Optional[_Union[_messages_pb2.Moderation, _Mapping]] = ..., publish_track: _Optional[_Union[_messages_pb2.PublishTrackResponse, _Mapping]] = ..., session_ended: _Optional[_Union[_messages_pb2.SessionEnded, _Mapping]] = ..., error: _Optional[_Union[_messages_pb2.Error, _Mapping]] = ...) -> None: ...

class DataClientMessage(_message.Message):
    __slots__ = ("request_id", "kind", "command", "request_step", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_STEP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    command: _messages_pb2.Command
    request_step: _step_pb2.RequestStep
    error: _messages_pb2.Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., command: _Optional[_Union[_messages_pb2.Command, _Mapping]] = ..., request_step: _Optional[_Union[_step_pb2.RequestStep, _Mapping]] = ..., error: _Optional[_Union[_messages_pb2.Error, _Mapping]] = ...) -> None: ...

class DataServerMessage(_message.Message):
    __slots__ = ("request_id", "kind", "message", "step_result", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    kind: MessageKind
    message: _messages_pb2.ModelMessage
    step_result: _step_pb2.StepResult
    error: _messages_pb2.Error
    def __init__(self, request_id: _Optional[str] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., message: _Optional[_Union[_messages_pb2.ModelMessage, _Mapping]] = ..., step_result: _Optional[_Union[_step_pb2.StepResult, _Mapping]] = ..., error: _Optional[_Union[_messages_pb2.Error, _Mapping]] = ...) -> None: ...
