from importlib import import_module

from django.apps import AppConfig


def ensure_seeds(sender, **kwargs):
    """Re-run the seed of the paper's risk categories, attack vectors and first guidelines after
    every migrate (and after a flush, which empties tables but keeps the migration history). It
    only adds what is missing."""
    from django.apps import apps

    import_module("annotation.migrations.0002_seed_lists_and_guidelines").seed(apps, None)


class AnnotationConfig(AppConfig):
    name = "annotation"

    def ready(self):
        from django.db.models.signals import post_migrate

        from .models.frozen import sqlite_triggers_install
        from .quality.review import overlap_on_judgement
        from .workspace.judgements import judgement_stored

        # A stored judgement opens its overlap review slots (the quality room builds on the workspace).
        judgement_stored.connect(overlap_on_judgement, dispatch_uid="annotation.overlap_on_judgement")
        post_migrate.connect(ensure_seeds, sender=self, dispatch_uid="annotation.ensure_seeds")
        post_migrate.connect(sqlite_triggers_install, sender=self, dispatch_uid="annotation.sqlite_triggers")
