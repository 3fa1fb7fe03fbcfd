"""Browser tests: the Dagster UI driven in headless Chromium."""
