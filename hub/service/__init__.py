"""The LearnHub hub-managed service."""

from hub.service.app import make_app

__all__ = ["make_app"]
