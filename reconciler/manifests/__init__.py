"""Manifests: what an operator writes, from bytes to checked objects.

`kinds` (the AIModel and RoutingRule types, pydantic at the edge), `yamlsafe`
(the YAML reader that refuses what could hurt), `secretscan`, `addresses`
(which endpoints are allowed), `loading` (files to objects with diagnostics),
`checking` (cross-object checks), `scoring` (the capability match that both the
checks and the router use), `documents` (editing manifest files for the write
path) and `schemagen` (the JSON Schemas). Imports only `base`; no database, no
git, no network.
"""
