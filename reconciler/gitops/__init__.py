"""GitOps services: git at a pinned commit to the live registry, and back.

`validating` (``grove validate``), `applying` (a plan into the registry, one
transaction), `reconciling` (fetch, load, check, diff, apply, record),
`watching` (the loop: triggers, lease, backoff, periodic full checks) and
`authoring` (API and CLI writes as git commits, rollbacks included). May use
the router's `routing.snapshots`; the routing services never import these.
"""
