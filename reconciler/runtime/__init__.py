"""Runtime: processes Grove starts on behalf of the services.

`logwriter`: the routing-log writer child process that takes routing-log rows
off the event loop and writes them in batches. Sits above the adapters (it
writes through `store`) and below the services (the router hands it rows).
"""
