"""Access control and input safety: API keys, tenants, rate limits, upload archive checks, strict patterns."""
