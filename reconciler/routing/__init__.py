"""Routing services: from the reconciled state to a model's answer.

`snapshots` (the immutable routing state read from the registry), `circuits`
(per-version breakers), `ranking` (candidates in order for a request),
`engine` (the router: failover chains, provider calls, logs and metrics) and
`analysis` (performance from the routing logs). Never imports `gitops`.
"""
