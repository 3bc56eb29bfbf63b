"""trainq's worker side: Celery app, tasks and the five training stages (never imports Flask)."""
