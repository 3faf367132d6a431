"""Payload models of the Helios messages, model -> client (docs/HELIOS.md §6).

Each model describes the ``data`` of a ``{type, data}`` message; ``TYPE`` is the wire type name.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]


class State(_Message):
    """Full model state; broadcast after every accepted command and every completed chunk."""

    TYPE = "state"

    started: bool = Field(description="True after an accepted start, until reset (also while paused).")
    running: bool = Field(description="started and not paused.")
    paused: bool = Field(description="True after pause, false after resume.")
    image_set: bool = Field(description="A reference image is set.")
    current_chunk: int = Field(description="Completed chunks = index of the chunk being (or next) generated.")
    current_frame: int = Field(description="Frames emitted (33 per chunk).")
    current_prompt: str | None = Field(
        description="Prompt of the chunk in progress or last generated; null before start."
    )
    image_strength: float = Field(description="Requested image strength (0-1).")
    scheduled_prompts: dict[str, str] = Field(
        description="Pending prompt changes: chunk index (as a string) -> prompt."
    )


class CommandError(_Message):
    """A command was refused by the model; its state is unchanged."""

    TYPE = "command_error"

    command: str = Field(description="Name of the refused command.")
    reason: str = Field(description="Why it was refused, in plain words.")


class ChunkComplete(_Message):
    """A chunk of 33 frames has been generated."""

    TYPE = "chunk_complete"

    chunk_index: int = Field(description="Index of the completed chunk.")
    frames_emitted: int = Field(description="Frames in the chunk (33).")
    active_prompt: str = Field(description="Prompt the chunk was generated with.")


class GenerationStarted(_Message):
    """Generation has started."""

    TYPE = "generation_started"

    prompt: str = Field(description="Prompt of chunk 0.")
    chunk_index: int = Field(description="First chunk (0).")


class GenerationPaused(_Message):
    """Generation pauses once the chunk in progress has finished."""

    TYPE = "generation_paused"

    frame: int = Field(description="Frames emitted when the pause was accepted.")
    chunk: int = Field(description="Current chunk when the pause was accepted.")


class GenerationResumed(_Message):
    """Generation resumes with the next chunk."""

    TYPE = "generation_resumed"

    frame: int = Field(description="Frames emitted when resumed.")
    chunk: int = Field(description="Current chunk when resumed.")


class GenerationReset(_Message):
    """The model was reset to a clean state."""

    TYPE = "generation_reset"

    frame: int = Field(description="Frames emitted before the reset.")
    chunk: int = Field(description="Current chunk before the reset.")


class PromptAccepted(_Message):
    """A prompt was scheduled."""

    TYPE = "prompt_accepted"

    prompt: str = Field(description="The accepted prompt.")
    chunk: int = Field(description="Chunk index at which it takes effect.")


class ImageAccepted(_Message):
    """A reference image was decoded and set."""

    TYPE = "image_accepted"

    width: int = Field(description="Width of the decoded upload, in pixels.")
    height: int = Field(description="Height of the decoded upload, in pixels.")


class ConditionsReady(_Message):
    """Which conditions are in place for generation."""

    TYPE = "conditions_ready"

    has_prompt: bool = Field(
        description="start would find a prompt (entry at chunk 0 before start; always after)."
    )
    has_image: bool = Field(description="A reference image is set.")


class SnapshotEntry(BaseModel):
    """One saved snapshot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_index: int = Field(description="Position in the buffer, 0 = oldest; pass it to rewind.")
    label: str = Field(description="Label given when saved.")
    chunk: int = Field(description="current_chunk when saved.")
    frame: int = Field(description="current_frame when saved.")


class SnapshotSaved(_Message):
    """A snapshot was saved."""

    TYPE = "snapshot_saved"

    snapshot_index: int = Field(description="Position of the new snapshot in the buffer, 0 = oldest.")
    label: str = Field(description="Label given when saved.")
    chunk: int = Field(description="current_chunk when saved.")
    frame: int = Field(description="current_frame when saved.")
    count: int = Field(description="Snapshots in the buffer.")


class SnapshotList(_Message):
    """The saved snapshots, oldest first."""

    TYPE = "snapshot_list"

    snapshots: list[SnapshotEntry] = Field(description="Saved snapshots, oldest first.")
    count: int = Field(description="Snapshots in the buffer.")
    capacity: int = Field(description="Buffer capacity (50).")


class RewindComplete(_Message):
    """A rewind was accepted; counters return to the snapshot when the chunk in progress completes."""

    TYPE = "rewind_complete"

    snapshot_index: int = Field(description="Resolved snapshot index (>= 0).")
    label: str = Field(description="Label of the snapshot.")
    chunk: int = Field(description="Chunk generation continues from.")
    frame: int = Field(description="Frame count generation continues from.")


class RewindFailed(_Message):
    """A rewind or save_snapshot was refused; the state is unchanged."""

    TYPE = "rewind_failed"

    command: Literal["rewind", "save_snapshot"] = Field(description="The refused command.")
    reason: str = Field(description="Why it was refused, in plain words.")


MESSAGES: dict[str, type[BaseModel]] = {
    model.TYPE: model
    for model in (
        State,
        CommandError,
        ChunkComplete,
        GenerationStarted,
        GenerationPaused,
        GenerationResumed,
        GenerationReset,
        PromptAccepted,
        ImageAccepted,
        ConditionsReady,
        SnapshotSaved,
        SnapshotList,
        RewindComplete,
        RewindFailed,
    )
}
