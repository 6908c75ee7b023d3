"""Planning: pure functions from desired and live state to decisions.

`livestate` (what the registry holds, as plain data), `diffing` (desired vs
live to a `plans.Plan`), `plans` (the plan as data and its renderings),
`safety` (the checks that refuse a plan), `status` (conditions), `rollbacks`
(which version a rollback returns to) and `listings` (what ``grove get`` and
``GET /api/models`` list). No I/O at all: every input is handed in.
"""
