"""Per-key request and token limits with OpenAI-style rate-limit headers, in three modes.

- ``window`` (``RateLimiter``): at most the limit in any sliding window of ``window_s``.
- ``bucket`` (``BucketLimiter``): continuous buckets refilled at ``limit / window_s`` per
  second holding ``burst_s`` of refill, so a per-minute limit is enforced per second.
- ``combined`` (``CombinedLimiter``): both at once, per second and over the whole window.

In every mode rejected requests are not recorded, so a client that backs off as told by
``retry-after`` is admitted on its next try.
"""

from llm_assets.simulator.limits.bucket import BucketLimiter, BucketShape, KeyBucket
from llm_assets.simulator.limits.combined import CombinedLimiter, Room
from llm_assets.simulator.limits.window import Decision, KeyWindow, RateLimiter, format_duration

__all__ = [
    "BucketLimiter",
    "BucketShape",
    "CombinedLimiter",
    "Decision",
    "KeyBucket",
    "KeyWindow",
    "RateLimiter",
    "Room",
    "format_duration",
]
