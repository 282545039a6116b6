"""Celery workers that run distillation jobs (``celery -A worker.app worker``)."""
