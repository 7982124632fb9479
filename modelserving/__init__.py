"""Policy variants, pairs and generations: choosing two configurations, sampling them through the
OpenAI-compatible client (Celery tasks), and the local model servers of the embedded set-up."""
