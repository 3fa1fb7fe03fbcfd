"""Runs bespokelabs-curator against the simulator; executed by curator's own venv's python.

Argument: one JSON object (base_url, api_key, rpm_per_minute, tpm_per_minute, max_tokens,
count). Prints one JSON line with the rows returned. Imports nothing from this project.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.update(
    {
        "CURATOR_DISABLE_CACHE": "1",
        "TELEMETRY_ENABLED": "false",
        "CURATOR_DISABLE_RICH_DISPLAY": "1",
        "CURATOR_VIEWER": "0",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
)

import tiktoken


class StandInEncoding:
    """tiktoken downloads its vocabulary at first use, which is impossible offline.

    Four characters per token is the estimate the simulator itself charges.
    """

    name = "stand-in"

    def encode(self, text: str, *args: object, **kwargs: object) -> list[int]:
        return [0] * (-(-len(text) // 4))


tiktoken.get_encoding = lambda name: StandInEncoding()  # type: ignore[assignment]
tiktoken.encoding_for_model = lambda name: StandInEncoding()  # type: ignore[assignment]

from bespokelabs import curator  # noqa: E402


def main() -> None:
    args = json.loads(sys.argv[1])
    llm = curator.LLM(
        model_name="sim-small",
        backend="openai",
        generation_params={"max_tokens": args["max_tokens"]},
        backend_params={
            "base_url": args["base_url"],
            "api_key": args["api_key"],
            "max_requests_per_minute": args["rpm_per_minute"],
            "max_tokens_per_minute": args["tpm_per_minute"],
        },
    )
    prompts = [
        f"curator review {i}: " + "battery life is great but the screen " * (1 + i % 4)
        for i in range(args["count"])
    ]
    started = time.time()
    output = llm(prompts)
    rows = len(output.dataset) if hasattr(output, "dataset") else len(output)
    print(json.dumps({"rows": rows, "seconds": time.time() - started}), flush=True)


if __name__ == "__main__":
    main()
