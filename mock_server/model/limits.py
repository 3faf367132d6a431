"""Every size and count limit on what a client can put into the Helios model (docs/LIMITS.md).

Chosen so that no accepted state can produce a model message larger than the data channel carries
(262 144 bytes): the worst case is a ``state`` whose prompts are all astral-plane characters, which v0's
JSON writes as two ``\\uXXXX`` escapes (12 bytes) each; tests/unit/test_limits.py computes it.
"""

from __future__ import annotations

PROMPT_MAX_CHARS = 2_000  # one prompt (set_prompt, schedule_prompt, set_conditioning), in characters
SCHEDULE_MAX_ENTRIES = 16  # pending scheduled prompts (scheduled_prompts in state)
SCHEDULE_MAX_CHARS = 14_000  # all pending scheduled prompts together, in characters
LABEL_MAX_CHARS = 200  # a snapshot label
CHUNK_MAX = 1_000_000  # the latest chunk schedule_prompt accepts (about 12.7 hours of video at 24 fps)
SEED_MAX = 2**53 - 1  # the largest integer a v1 double (and a JavaScript number) carries exactly
UPLOAD_FIELD_MAX_CHARS = 256  # upload_id, name and mime_type of an upload reference
IMAGE_MAX_PIXELS = 4096 * 4096  # width x height of a reference image, read from its header before decoding

# Text parameters (prompts, labels) may hold tab, line feed and carriage return but no other C0 control
# character and no DEL; JSON Schema "pattern" and pydantic share this expression.
TEXT_PATTERN = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*$"
