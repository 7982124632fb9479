"""The ground floor: what every other part of Tandem may use. Modules here that the Django-free
training jobs import (`preference_scale`) import nothing of Django."""
