"""Sources of desired state: a plain folder now; git objects at a commit later.

Adapters: they read bytes from the outside world and hand them to `loading`.
"""
