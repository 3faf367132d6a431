from . import step_pb2 as _step_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrackDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACK_DIRECTION_UNSPECIFIED: _ClassVar[TrackDirection]
    TRACK_DIRECTION_RECV: _ClassVar[TrackDirection]
    TRACK_DIRECTION_SEND: _ClassVar[TrackDirection]
TRACK_DIRECTION_UNSPECIFIED: TrackDirection
TRACK_DIRECTION_RECV: TrackDirection
TRACK_DIRECTION_SEND: TrackDirection

class ClientStatMetric(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class ClientTrackStat(_message.Message):
    __slots__ = ("timestamp_ms", "track", "kind", "direction", "unknown_5", "metrics", "frame_stages", "codec_implementation", "unknown_11")
    class FrameStage(_message.Message):
        __slots__ = ("name", "total_ms", "count")
        NAME_FIELD_NUMBER: _ClassVar[int]
        TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
        COUNT_FIELD_NUMBER: _ClassVar[int]
        name: str
        total_ms: float
        count: int
        def __init__(self, name: _Optional[str] = ..., total_ms: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_5_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FRAME_STAGES_FIELD_NUMBER: _ClassVar[int]
    CODEC_IMPLEMENTATION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_11_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    track: str
    kind: _step_pb2.TrackKind
    direction: TrackDirection
    unknown_5: int
    metrics: _containers.RepeatedCompositeFieldContainer[ClientStatMetric]
    frame_stages: _containers.RepeatedCompositeFieldContainer[ClientTrackStat.FrameStage]
    codec_implementation: str
    unknown_11: bool
    def __init__(self, timestamp_ms: _Optional[int] = ..., track: _Optional[str] = ..., kind: _Optional[_Union[_step_pb2.TrackKind, str]] = ..., direction: _Optional[_Union[TrackDirection, str]] = ..., unknown_5: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[ClientStatMetric, _Mapping]]] = ..., frame_stages: _Optional[_Iterable[_Union[ClientTrackStat.FrameStage, _Mapping]]] = ..., codec_implementation: _Optional[str] = ..., unknown_11: _Optional[bool] = ...) -> None: ...

class ClientConnectionStat(_message.Message):
    __slots__ = ("timestamp_ms", "metrics", "environment", "message_stages")
    class Environment(_message.Message):
        __slots__ = ("sdk_type", "sdk_version", "os", "os_version", "arch")
        SDK_TYPE_FIELD_NUMBER: _ClassVar[int]
        SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
        OS_FIELD_NUMBER: _ClassVar[int]
        OS_VERSION_FIELD_NUMBER: _ClassVar[int]
        ARCH_FIELD_NUMBER: _ClassVar[int]
        sdk_type: str
        sdk_version: str
        os: str
        os_version: str
        arch: str
        def __init__(self, sdk_type: _Optional[str] = ..., sdk_version: _Optional[str] = ..., os: _Optional[str] = ..., os_version: _Optional[str] = ..., arch: _Optional[str] = ...) -> None: ...
    class MessageStage(_message.Message):
        __slots__ = ("name", "total_ms", "count")
        NAME_FIELD_NUMBER: _ClassVar[int]
        TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
        COUNT_FIELD_NUMBER: _ClassVar[int]
        name: str
        total_ms: float
        count: int
        def __init__(self, name: _Optional[str] = ..., total_ms: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_STAGES_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    metrics: _containers.RepeatedCompositeFieldContainer[ClientStatMetric]
    environment: ClientConnectionStat.Environment
    message_stages: _containers.RepeatedCompositeFieldContainer[ClientConnectionStat.MessageStage]
    def __init__(self, timestamp_ms: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[ClientStatMetric, _Mapping]]] = ..., environment: _Optional[_Union[ClientConnectionStat.Environment, _Mapping]] = ..., message_stages: _Optional[_Iterable[_Union[ClientConnectionStat.MessageStage, _Mapping]]] = ...) -> None: ...

class ClientStats(_message.Message):
    __slots__ = ("tracks", "connection")
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    tracks: _containers.RepeatedCompositeFieldContainer[ClientTrackStat]
    connection: ClientConnectionStat
    def __init__(self, tracks: _Optional[_Iterable[_Union[ClientTrackStat, _Mapping]]] = ..., connection: _Optional[_Union[ClientConnectionStat, _Mapping]] = ...) -> None: ...
