"""Run the plugin: `python main.py` (HOST and PORT from the environment, default
127.0.0.1:8000; the SDK reads VIVIFIED_GATEWAY_URL, VIVIFIED_REGISTRATION_TOKEN, ...)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    uvicorn.run(
        "app:app",
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        log_level=os.environ.get("LOG_LEVEL", "warning"),
    )
