"""Tests of the console's pure parts (reconciler/web): markup checked with an XML parser,
no browser and no server."""
