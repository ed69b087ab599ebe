"""The LearnHub hub-managed service: ``python -m hub.service`` (see ``__main__.py``)."""
