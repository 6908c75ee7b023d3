"""The console's package (DESIGN.md section 10): server-rendered Jinja2 pages, mounted by the
API server at ``/``.

So far it holds the charts, pure functions of numbers to markup: ``charts`` (the SVG figures),
``buckets`` (percentiles and time buckets of raw samples) and ``scales`` (coordinates,
downsampling, ticks and labels). The pages, their routes and templates come later.
"""
