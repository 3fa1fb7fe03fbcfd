"""A deterministic generator of realistic customer reviews, a few hundred per day.

The same date always yields the same reviews, so partitions are reproducible and the ledger
can recognise unchanged rows across runs.
"""

from __future__ import annotations

import hashlib
import random
from datetime import date, datetime, timedelta

import pandas as pd

PRODUCTS: dict[str, list[str]] = {
    "Aurora Wireless Earbuds": ["battery life", "sound quality", "fit", "charging case"],
    "Nimbus Robot Vacuum": ["suction", "navigation", "noise", "app"],
    "Cascade Espresso Machine": ["crema", "steam wand", "cleaning", "warm-up time"],
    "Trailhead 40L Backpack": ["straps", "zippers", "rain cover", "pockets"],
    "Lumen Desk Lamp": ["brightness", "colour temperature", "base", "touch controls"],
    "Pulse Fitness Watch": ["heart-rate sensor", "GPS", "battery life", "strap"],
    "Harbor Cast-Iron Skillet": ["seasoning", "weight", "heat retention", "handle"],
    "Quill E-Reader": ["screen", "page turns", "battery life", "store"],
    "Summit Standing Desk": ["motor", "stability", "assembly", "height presets"],
    "Breeze Air Purifier": ["filter", "fan noise", "air-quality sensor", "size"],
}
PRAISE = [
    "the {aspect} is excellent",
    "I love the {aspect}",
    "the {aspect} exceeded my expectations",
    "great {aspect} for the price",
    "the {aspect} works flawlessly",
]
COMPLAINTS = [
    "the {aspect} stopped working after two weeks",
    "the {aspect} is disappointing",
    "I had constant trouble with the {aspect}",
    "the {aspect} feels cheap",
    "support could not fix the {aspect}",
]
OPENERS = [
    "Bought this for my partner.",
    "Second one I have owned.",
    "Used it daily for a month.",
    "Upgraded from an older model.",
    "Picked it up on sale.",
    "Gift for my dad.",
    "",
]
CLOSERS = [
    "Would buy again.",
    "Returning it.",
    "Recommended with reservations.",
    "Five stars from me.",
    "Not worth the money.",
    "Delivery was fast.",
    "",
]


def _rng_for(day: date) -> random.Random:
    seed = int(hashlib.sha256(day.isoformat().encode()).hexdigest()[:16], 16)
    return random.Random(seed)


def _review_text(rng: random.Random, product: str, rating: int) -> tuple[str, str]:
    aspects = rng.sample(PRODUCTS[product], k=2)
    if rating >= 4:
        parts = [
            rng.choice(PRAISE).format(aspect=aspects[0]),
            rng.choice(PRAISE).format(aspect=aspects[1]),
        ]
        title = f"Great {product.split()[-1].lower()}"
    elif rating <= 2:
        parts = [rng.choice(COMPLAINTS).format(aspect=a) for a in aspects]
        title = f"Disappointed with the {aspects[0]}"
    else:
        parts = [
            rng.choice(PRAISE).format(aspect=aspects[0]),
            "but " + rng.choice(COMPLAINTS).format(aspect=aspects[1]),
        ]
        title = "Mixed feelings"
    body = " ".join(
        s
        for s in (
            rng.choice(OPENERS),
            parts[0].capitalize() + ", " + parts[1] + ".",
            rng.choice(CLOSERS),
        )
        if s
    )
    return title, body


def generate_reviews(day: date | str, count: int | None = None) -> pd.DataFrame:
    """The reviews posted on ``day``.

    Args:
        day: The date (``date`` or ``"YYYY-MM-DD"``).
        count: How many; by default 200 to 400, fixed per date.

    Returns:
        Columns ``review_id``, ``product``, ``rating``, ``title``, ``body``, ``author``,
        ``created_at``.

    Examples:
        >>> df = generate_reviews("2026-11-01", count=3)
        >>> list(df.columns)[:3], len(df)
        (['review_id', 'product', 'rating'], 3)
    """
    day = date.fromisoformat(day) if isinstance(day, str) else day
    rng = _rng_for(day)
    n = count if count is not None else rng.randint(200, 400)
    start = datetime(day.year, day.month, day.day)
    rows = []
    for i in range(n):
        product = rng.choice(list(PRODUCTS))
        rating = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 2, 4, 5])[0]
        title, body = _review_text(rng, product, rating)
        rows.append(
            {
                "review_id": f"{day.isoformat()}-{i:04d}",
                "product": product,
                "rating": rating,
                "title": title,
                "body": body,
                "author": f"customer_{rng.randint(1000, 99999)}",
                "created_at": start + timedelta(seconds=rng.randint(0, 86_399)),
            }
        )
    return pd.DataFrame(rows)
