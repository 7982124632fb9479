from django import template
from django.utils.safestring import mark_safe

from annotation.workspace.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text):
    """Untrusted markdown → sanitised HTML (see annotation.workspace.rendering)."""
    return mark_safe(render_markdown(text))  # noqa: S308 — nh3 has sanitised it
