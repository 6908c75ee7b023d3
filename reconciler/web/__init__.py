"""The console's package (DESIGN.md section 10): server-rendered Jinja2 pages, mounted by the
API server at ``/``.

So far it holds ``charts``: the SVG charts and the time buckets that feed them, pure functions
of numbers to markup. The pages, their routes and templates come later.
"""
