"""trainq's API side: configuration, models, HTTP API and CLI (never imports torch)."""
