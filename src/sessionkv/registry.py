"""Placeholder, replaced by the registry implementation."""


class SessionInfo:
    pass


class SessionRegistry:
    pass
