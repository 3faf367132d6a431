"""Generated reactor_wire.v1 bindings (scripts/gen_proto.py). DO NOT EDIT."""

from .envelope_pb2 import ControlClientMessage, ControlServerMessage, DataClientMessage, DataServerMessage, MessageKind  # noqa: F401
from .messages_pb2 import Error, UploadReference, Command, ModelMessage, Ping, RequestSchema, ModelSchema, FileUploaded, RequestClip, RequestRecording, ClipReady, ClipFailed, Moderation, SessionEnded, PublishTrack, PauseTrack, ResumeTrack, UnpublishTrack, PublishTrackResponse  # noqa: F401
from .stats_pb2 import ClientStatMetric, ClientTrackStat, ClientConnectionStat, ClientStats, TrackDirection  # noqa: F401
from .step_pb2 import Frame, TrackFrames, RequestStep, StepFileRef, StepResult, TrackKind, FrameEncoding, StepFailure  # noqa: F401

__all__ = [
    "ClientConnectionStat",
    "ClientStatMetric",
    "ClientStats",
    "ClientTrackStat",
    "ClipFailed",
    "ClipReady",
    "Command",
    "ControlClientMessage",
    "ControlServerMessage",
    "DataClientMessage",
    "DataServerMessage",
    "Error",
    "FileUploaded",
    "Frame",
    "FrameEncoding",
    "MessageKind",
    "ModelMessage",
    "ModelSchema",
    "Moderation",
    "PauseTrack",
    "Ping",
    "PublishTrack",
    "PublishTrackResponse",
    "RequestClip",
    "RequestRecording",
    "RequestSchema",
    "RequestStep",
    "ResumeTrack",
    "SessionEnded",
    "StepFailure",
    "StepFileRef",
    "StepResult",
    "TrackDirection",
    "TrackFrames",
    "TrackKind",
    "UnpublishTrack",
    "UploadReference",
]
