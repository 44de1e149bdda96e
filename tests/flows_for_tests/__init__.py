"""Small flows the orchestration tests deploy (fast, deterministic, no energy data needed)."""
